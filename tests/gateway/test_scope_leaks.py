"""A transit and a school partner try every filter and API they can to see calls outside their zones, or fields they must not see.

Alerts inside and outside their zones are published with caller-level data planted in
them (a phone number, an address, an incident id, a name, a detector reason, a
supervisor's note, an event zone), calls are planted in their zones and next to them
(in the hour their agreement has released, the hour still settling and the minute now), the worker's forecast set is planted with
an area holding its zone, and then each partner subscribes with other zones, polygons, categories, resumes from
cursors it was given and from raw stream ids and forged cursors, calls every API with
cells outside its zone, coarse and fine, and injected query parameters. Every WebSocket
frame and every HTTP body it received is scanned: no alert outside its zones or below k,
no field outside the partner view, no number in an alert, no cell outside its own, no
stream id, no planted value anywhere, and no count that is not a value of its released
table (at least k and the exact calls of its unit in a closed, settled window, or null).
"""

from __future__ import annotations

import datetime
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

import h3
import pytest
from websockets.exceptions import InvalidStatus

from detectors.types import AlertKind, AlertState
from gateway import cursors
from gateway.disclosure import closed_windows
from gateway.partnerforecast import partner_forecast
from gateway.policy import Scope, alert_id_for, derive_id_key, scope_for, stream_id_for
from gateway.tokens import Claims, Role
from streams.ingest.schema import Category
from tests.gateway.live import AGREEMENTS, FAR, SECRET, ZONES, GatewayProcess, drain, make_alert, publish, recv_until, token

pytestmark = pytest.mark.stack

K = 3
#: the agreements' window (minutes), and the event time after a window's end before it is released (WF_GATEWAY_SETTLE_S)
WINDOW_MIN = 60
SETTLE_S = 120
CATEGORY_NAMES = frozenset(c.value for c in Category)

# What gateway.disclosure.partner_alert_view lets a partner see of an alert, plus the status the
# hub and the API add ({action, at}: not who, not the note). No cells, no statistic, no detector text.
PARTNER_ALERT_KEYS = frozenset(
    {"id", "kind", "state", "severity", "extent", "started_at", "at", "units", "zones", "categories", "reason"}
)  # fmt: skip
PARTNER_STATUS_KEYS = frozenset({"action", "at"})
PARTNER_ACTION_KEYS = frozenset({"alert_id", "action", "at"})
#: an action as an alert's page (/api/alerts/{id}/records) lists it for a partner: that it was handled, and when
PARTNER_RECORD_ACTION_KEYS = frozenset({"action", "at"})
NOT_FOUND = (404, "not_found")
#: the only numbers in a partner's alert view: times, floored to the minute
ALERT_TIMES = frozenset({"at", "started_at", "status.at"})
#: the shapes of a partner's counts: the counts frame, /api/hotspots (and a row of it), /api/released (and a window of it)
COUNTS_FRAME_KEYS = frozenset({"type", "at", "window_min", "k", "cells", "zones", "units"})
HOTSPOTS_KEYS = frozenset({"at", "window_min", "k", "units", "cells", "zones"})
HOTSPOT_ROW_KEYS = frozenset({"unit", "name", "zones", "calls", "at_least", "exact"})
RELEASED_KEYS = frozenset({"window_min", "k", "groups", "units", "windows"})
RELEASED_WINDOW_KEYS = frozenset({"start", "minutes", "values"})
#: a partner's forecast (gateway.partnerforecast): /api/forecast's answer, and the forecast frame that carries it
FORECAST_KEYS = frozenset({"basis", "window_min", "k", "horizon_h", "after", "same_weekday", "days", "units", "text"})
FORECAST_UNIT_KEYS = frozenset({"id", "name", "zones", "windows"})
FORECAST_FRAME_KEYS = frozenset({"type", "forecast"})
#: planted in every alert as a detector or an attacker with write access to the stream might
PLANTED = {
    "caller": {"phone": "215-555-0142", "name": "Jane Q. Canary", "address": "1428 Elm Street"},
    "incident_id": "F24-0001234",
    "calls": [{"phone": "610-555-0199", "address": "77 Sycamore Lane", "incident": "F24-0009876"}],
}
CANARY_CATEGORY = "CALLER 484-555-0123"
REASON_CANARY = "reason-canary: caller at 1428 Elm Street, callback 215-555-0142"
NOTE_CANARY = "note-canary: Engine 12 at 1428 Elm Street, caller Jane Q. Canary"
ZONE_CANARY = "secret-event-zone-canary"
#: in the worker's forecast set (the name of an area holding the partner's zone); a partner never gets that set
FORECAST_CANARY = "forecast-canary Borough"
#: every value planted; none may appear in any byte a partner receives
CANARIES = [
    "215-555-0142",
    "Jane Q. Canary",
    "1428 Elm Street",
    "F24-0001234",
    "610-555-0199",
    "77 Sycamore Lane",
    "F24-0009876",
    "484-555-0123",
    "reason-canary",
    "note-canary",
    ZONE_CANARY,
    FORECAST_CANARY,
]
#: keys that may appear nowhere in what a partner receives: the detector's statistics and model, the planted
#: ones, who handled an alert and how, an event zone, a cell's history or count. (``cells`` and ``window_min`` are
#: checked where they may appear: the empty ``cells`` of counts, a partner's own cells in /api/zones and /api/cells;
#: ``calls`` is a hot-spot row's released values, checked by ``_check_counts``, and every planted call is a canary;
#: ``summary`` is the partner's own agreement in words in /api/me, and an alert's plain summary is caught by
#: ``_check_view``, which holds every alert a partner receives to exactly ``PARTNER_ALERT_KEYS``.)
FORBIDDEN_KEYS = (
    frozenset(make_alert("x", (FAR,))) - PARTNER_ALERT_KEYS - {"cells", "window_min", "summary"}
    | frozenset(PLANTED) - {"calls"} | {"note", "by", "zone", "bins", "count"}
)  # fmt: skip
CELL = re.compile(r"(?<![0-9a-f])8[0-9a-f]{14}(?![0-9a-f])")
#: a Redis stream id (milliseconds-sequence): it dates activity outside the partner's scope
STREAM_ID = re.compile(r"(?<![0-9])[0-9]{13}-[0-9]+")
CURSOR = re.compile(r"c-[A-Za-z0-9_-]{40,}")
ALL_CELLS = frozenset().union(*(z.cells for z in ZONES.values()))
ID_KEY = derive_id_key(SECRET)
CURSOR_KEY = cursors.cursor_key(SECRET)


@dataclass(frozen=True)
class Partner:
    role: str
    agency: str
    agreement: str
    subject: str
    zone: str
    #: zones of others it will try to name (another agency's near by, and its own agency's not in its token)
    others: tuple[str, ...]

    @property
    def cells(self) -> frozenset[str]:
        return ZONES[self.zone].cells

    @property
    def inside(self) -> str:
        return sorted(self.cells)[0]

    @property
    def inside2(self) -> str:
        """Another cell of its zone (the same one when the zone has one cell)."""
        return sorted(self.cells)[-1]

    @property
    def near(self) -> str:
        """A res-8 cell in no zone that shares the res-7 parent of its zone's first cell (what a coarser count would sum in)."""
        return next(c for c in sorted(h3.cell_to_children(h3.cell_to_parent(self.inside, 7), 8)) if c not in ALL_CELLS)

    def token(self) -> str:
        return token(self.role, zones=(self.zone,), agency=self.agency, subject=self.subject, agreement=self.agreement)

    def scope(self) -> Scope:
        """The partner's scope as the test's gateway builds it (same secret: same opaque alert ids and cursors)."""
        now = time.time()
        claims = Claims(self.subject, Role(self.role), self.agency, (self.zone,), now + 3600, now, "t", agreement=self.agreement)
        return scope_for(claims, ZONES, now, agreements=AGREEMENTS, id_key=ID_KEY, cursor_key=CURSOR_KEY)

    def units(self) -> dict[str, frozenset[str]]:
        """The released units its token may see: unit id -> its res-8 cells."""
        s = self.scope()
        assert s.plan is not None
        return {u.id: u.cells for u in s.plan.units if u.id in s.unit_ids}


PARTNERS = {
    "transit": Partner("transit", "SEPTA", "septa", "septa-desk-7", "septa-lansdale", ("school-north-penn-hs", "septa-ambler")),
    "school": Partner(
        "school", "Montgomery County Intermediate Unit 1", "mciu-1", "mciu-desk-2", "school-north-penn-hs",
        ("septa-lansdale", "school-cheltenham-hs"),
    ),
}  # fmt: skip


@dataclass
class Received:
    """One thing a partner received, and what it had sent to get it: a cell it named itself (echoed in a refusal) is
    not a leak."""

    where: str
    body: bytes
    sent: str
    error: bool


@dataclass
class Probe:
    """Everything one partner sent and received."""

    partner: Partner
    received: list[Received] = field(default_factory=list)
    inputs: int = 0

    def http(self, gw: GatewayProcess, path: str, tok: str | None = None) -> tuple[int, dict | None]:
        self.inputs += 1
        status, body = gw.get(path, self.partner.token() if tok is None else tok)
        self.received.append(Received(f"GET {path} -> {status}", body, path, status >= 400))
        try:
            return status, json.loads(body)
        except ValueError:
            return status, None

    def ws(self, gw: GatewayProcess, label: str, last_id: str | None = None):
        self.inputs += 1
        try:
            ws = gw.ws(self.partner.token(), last_id=last_id)
        except InvalidStatus as exc:
            where = f"ws {label} handshake -> {exc.response.status_code}"
            self.received.append(Received(where, exc.response.body, str(last_id), True))
            return None
        return ws

    def send(self, ws, label: str, message: dict) -> dict:
        self.inputs += 1
        text = json.dumps(message)
        ws.send(text)
        got, frames = recv_until(ws, lambda f: f["type"] in ("error", "subscribed", "zone_created"))
        self.keep(label, frames, sent=text)
        return got

    def keep(self, label: str, frames: list[dict], sent: str = "") -> None:
        for i, f in enumerate(frames):
            self.received.append(Received(f"ws {label} frame {i} ({f['type']})", json.dumps(f).encode(), sent, f["type"] == "error"))

    def frames(self, kind: str) -> list[dict]:
        return [json.loads(r.body) for r in self.received if r.where.startswith("ws ") and f"({kind})" in r.where]


@dataclass
class Truth:
    """What the test planted: every alert by the partner's opaque id for it, those it may see, and the calls per minute."""

    alerts: dict[str, dict]
    visible: set[str]
    #: epoch minute -> {"cell|CATEGORY": calls}, as the worker's minute buckets hold them
    buckets: dict[int, dict[str, int]]
    #: the event time the gateway reads (the worker's watermark)
    watermark: float

    def exact(self, cells: frozenset[str], start: float) -> int:
        """The calls in ``cells`` over the window starting at ``start`` (every category once; ``ALL`` is their total)."""
        first = int(start // 60)
        return sum(
            n
            for m, fields in self.buckets.items()
            if first <= m < first + WINDOW_MIN
            for f, n in fields.items()
            if f.rpartition("|")[0] in cells and f.rpartition("|")[2] != "ALL"
        )

    def released(self, cells: frozenset[str], start: float) -> int | None:
        """What the released table must say for these cells and window: the exact calls, or null below k."""
        n = self.exact(cells, start)
        return n if n >= K else None


def planted(alert: dict, **changes) -> dict:
    return {**alert, **PLANTED, "reason": REASON_CANARY, **changes}


def publish_alerts(r, prefix: str, p: Partner, other_cells: list[str], batch: str) -> dict[str, tuple[str, dict]]:
    """Alerts inside and outside the partner's zone, each with caller-level data planted; name -> (stream id, alert)."""
    inside, near = p.inside, p.near
    cats = {"TRAFFIC": 10, "EMS": 2, CANARY_CATEGORY: 9}
    alerts = {
        "inside": planted(make_alert(f"surge:{inside}:{batch}", (inside, near, FAR), observed=12, categories=cats)),
        "inside-k": planted(make_alert(f"surge:{inside}:k-{batch}", (inside,), observed=K, categories={"EMS": K, "FIRE": K - 1})),
        "inside-small": planted(make_alert(f"surge:{inside}:small-{batch}", (inside,), observed=K - 1, categories={"FIRE": K - 1})),
        "anomaly-inside": planted(make_alert(f"anomaly:{inside}:{batch}", (inside,), kind=AlertKind.ANOMALY, score=0.95)),
        "zone-surge-inside": planted(
            make_alert(f"zone_surge:{ZONE_CANARY}:{batch}", (inside,), kind=AlertKind.ZONE_SURGE), zone=ZONE_CANARY
        ),
        "outage": planted(make_alert(f"feed_outage:{batch}", (), kind=AlertKind.FEED_OUTAGE, observed=0, categories={})),
        "near": planted(make_alert(f"surge:{near}:{batch}", (near,), observed=25)),
        "far": planted(make_alert(f"surge:{FAR}:{batch}", (FAR,), observed=40)),
        "other-zones": planted(make_alert(f"surge:{other_cells[0]}:{batch}", tuple(other_cells), observed=30)),
        "far-closed": planted(make_alert(f"surge:{FAR}:{batch}", (FAR,), observed=40, state=AlertState.CLOSED)),
    }
    return {name: (publish(r, prefix, a), a) for name, a in alerts.items()}


#: what a partner may see of each batch: its zone's alerts on at least k calls, and feed outages
VISIBLE = ("inside", "inside-k", "anomaly-inside", "zone-surge-inside", "outage")


def plant_counts(r, prefix: str, p: Partner, other_cells: list[str], now: float) -> tuple[dict[int, dict[str, int]], float]:
    """Calls in the newest released hour (a few in the zone, thousands next to it, in other zones, far away and in the
    res-7 sums), the hour before (fewer than k in the zone), the hour still settling and the minute now (many in the
    zone: neither may show); returns the buckets and the newest released hour's start. The watermark is ``now``."""
    last_hour = int((now - SETTLE_S) // 3600) * 3600 - 3600  # the newest window that has settled
    first, last = last_hour // 60, last_hour // 60 + WINDOW_MIN - 1
    parent = h3.cell_to_parent(p.inside, 7)  # the worker also counts coarser cells
    around = {p.near: 5000, FAR: 7000, **dict.fromkeys(other_cells, 6000), parent: 5004}
    calls: dict[int, dict[tuple[str, str], int]] = {
        first - 1: {(p.inside, "EMS"): K - 1},  # the hour before: withheld
        first: {(p.inside, "TRAFFIC"): 3, **{(c, "TRAFFIC"): n for c, n in around.items()}},
        last: {(p.inside2, "EMS"): 1, (p.near, "EMS"): 3},
        last + 1: {(p.inside, "FIRE"): 40},  # the hour still settling
        int(now // 60): {(p.inside, "POLICE"): 50, (p.inside2, "POLICE"): 2},
    }
    buckets: dict[int, dict[str, int]] = {}
    for minute, by in calls.items():
        fields = buckets.setdefault(minute, {})
        for (cell, cat), n in by.items():
            fields[f"{cell}|{cat}"] = fields.get(f"{cell}|{cat}", 0) + n
            fields[f"{cell}|ALL"] = fields.get(f"{cell}|ALL", 0) + n
        r.hset(f"{prefix}:b:{minute}", mapping=fields)
    r.set(f"{prefix}:wm:call:0", now)
    return buckets, float(last_hour)


def plant_worker_forecast(r, prefix: str, p: Partner, now: float) -> None:
    """The worker's forecast set (the issue 22 contract) with an area made of the partner's zone and the cells around
    it, its res-7 cell and a hot spot in its zone, each with a raw-call forecast; a partner must get none of it."""
    f = {"start": now, "end": now + 8 * 3600, "mean": 2.37, "lo80": 1, "hi80": 4, "lo95": 0, "hi95": 6}
    area = {
        "kind": "area", "name": FORECAST_CANARY, "cells": [h3.cell_to_parent(p.inside, 7)],
        "by_horizon": {"1": f, "8": f, "24": f}, "hourly": [f] * 8, "categories": {"EMS": {"8": f}},
    }  # fmt: skip
    cell7 = h3.cell_to_parent(p.inside, 7)
    near = {"kind": "cell7", "name": "near", "cells": [cell7], "by_horizon": {"8": f}}
    spot = {"cell": p.inside, "mean": 2.37, "rank": 1}
    hot = {"horizon": 8, "resolution": 8, "area_cells": 100, "cells": [spot], "flagged": {"0.005": 1}}
    fs = {
        "v": 1, "issued": now, "made": now + 3.2, "timezone": "UTC", "horizons": [1, 8, 24],
        "areas": {f"area:{FORECAST_CANARY}": area, f"h3:{cell7}": near}, "hotspots": hot,
        "monitor": {"jurisdiction|8": {"n": 3, "mae": 1.5, "coverage80": 0.8, "coverage95": 0.95, "bias": 0.1, "drift": 0}},
    }  # fmt: skip
    r.set(f"{prefix}:forecast", json.dumps(fs))
    r.incr(f"{prefix}:forecast:version")


def ring(cell: str, d: float) -> list[list[float]]:
    lat, lng = h3.cell_to_latlng(cell)
    return [[lng - d, lat - d], [lng + d, lat - d], [lng + d, lat + d], [lng - d, lat + d], [lng - d, lat - d]]


def polygon(coords: list[list[float]]) -> dict:
    return {"type": "Polygon", "coordinates": [coords]}


COUNTY = polygon([[-75.69, 39.96], [-75.01, 39.96], [-75.01, 40.44], [-75.69, 40.44], [-75.69, 39.96]])


def hostile_messages(p: Partner) -> list[dict]:
    """What a partner may send to widen its view; each is refused (fewer than the 20 that close a socket), then what it may send."""
    others = list(p.others)
    msgs: list[dict] = [{"type": "subscribe", "zones": [z]} for z in others]
    msgs += [
        {"type": "subscribe", "zones": [p.zone, *others]},
        {"type": "subscribe", "zones": sorted(ZONES)},
        {"type": "subscribe", "zones": ["*"]},
        {"type": "subscribe", "zones": ["septa-lansdale' OR '1'='1"]},
        {"type": "subscribe", "polygon": polygon(ring(FAR, 0.01))},
        {"type": "subscribe", "polygon": polygon(ring(p.near, 0.0003))},
        {"type": "subscribe", "polygon": polygon(ring(sorted(ZONES[others[0]].cells)[0], 0.0003))},
        {"type": "subscribe", "zones": [p.zone], "polygon": polygon(ring(FAR, 0.01))},
        {"type": "subscribe", "categories": ["SECRET"]},
        {"type": "subscribe", "role": "supervisor"},
        {"type": "subscribe", "agency": "Montgomery County 911", "zones": [p.zone]},
        {"type": "create_zone", "id": "mine", "name": "Mine", "polygon": COUNTY, "starts_at": time.time(), "ends_at": time.time() + 60},
    ]
    # what it is allowed: its own zone, the whole county (cut down to its zone), every category
    msgs += [
        {"type": "subscribe", "zones": [p.zone], "categories": [c.value for c in Category], "min_severity": "low"},
        {"type": "subscribe", "polygon": COUNTY, "min_severity": "low"},
    ]
    return msgs


BAD_PARAM = (400, "unknown_parameter")
FORBIDDEN = (403, "forbidden")
OUT_OF_SCOPE = (403, "out_of_scope")


def hostile_paths(
    p: Partner, other_cells: list[str], sids: list[str], mine: list[str], others: list[str], detector_ids: list[str]
) -> list[tuple[str, tuple[int, str] | int | None]]:
    """Every path a partner may try, and the answer it must get: (status, error), a status, or None (any refusal or answer).

    ``mine``: the partner's ids of the alerts it may see; ``others``: its ids of the alerts it may not (outside its
    zone, below k); ``detector_ids``: the detectors' ids of them all (never a partner's)."""
    inside, near = p.inside, p.near
    coarse = [h3.cell_to_parent(inside, res) for res in range(0, 8)] + [h3.cell_to_parent(FAR, res) for res in (5, 6, 7)]
    fine = [h3.cell_to_center_child(inside, res) for res in (9, 12, 15)] + [h3.cell_to_center_child(FAR, 9)]
    others = [FAR, near, *other_cells, *coarse, *fine]
    paths: list[tuple[str, tuple[int, str] | int | None]] = [
        ("/api/me", 200),
        ("/api/zones", 200),
        ("/api/zones?all=1", BAD_PARAM),
        ("/api/zones?agency=SEPTA&role=supervisor", BAD_PARAM),
        ("/api/alerts", 200),
        ("/api/alerts?state=all&limit=1000", 200),
        ("/api/alerts?state=all&kind=surge", 200),
        ("/api/alerts?state=all&kind=feed_outage", 200),
        ("/api/alerts?state=all&kind=zone_surge", 200),
        ("/api/alerts?state=all&kind=anomaly&min_severity=low", 200),
        ("/api/alerts?state=all&kind=surge%00", 200),
        (f"/api/alerts?state=all&zone={p.others[0]}&zones={p.others[1]}", BAD_PARAM),
        ("/api/alerts?state=all&role=supervisor&agency=Montgomery%20County%20911&as=supervisor", BAD_PARAM),
        (f"/api/alerts?state=all&cells={FAR}&cell={FAR}", BAD_PARAM),
        ("/api/alerts?state=all&k=1", BAD_PARAM),
        ("/api/alerts?state=all&state=open", (400, "bad_state")),
        ("/api/alerts?state=all%26role%3Dsupervisor", (400, "bad_state")),
        ("/api/alerts?state=all&limit=100000", (400, "bad_limit")),
        ("/api/alerts?state=all&limit=-1", (400, "bad_limit")),
        ("/api/alerts?kind[]=surge&state=all", BAD_PARAM),
        (f"/api/alerts?state=all&last_id={sids[0]}", BAD_PARAM),
        # the night's search (gateway.search): matched on its own views; area names are never a partner's to name
        ("/api/alerts?state=closed", 200),
        ("/api/alerts?state=all&category=EMS&since=0&until=99999999999", 200),
        ("/api/alerts?state=all&q=reason-canary", 200),
        ("/api/alerts?state=all&area=Lansdale%20Borough", BAD_PARAM),
        ("/api/alerts?state=all&q=" + "x" * 101, (400, "bad_query")),
        ("/api/alerts?state=all&since=2&until=1", (400, "bad_range")),
        ("/api/alerts/../audit", None),
        ("/api/alerts;role=supervisor", None),
        ("/api//alerts?state=all", None),
        ("/API/alerts", None),
        ("/api/hotspots", 200),
        ("/api/hotspots?window=60", 200),
        ("/api/hotspots?window=15", (400, "bad_window")),
        ("/api/hotspots?window=1440", (400, "bad_window")),
        ("/api/hotspots?window=15&window=60", (400, "bad_window")),
        ("/api/hotspots?window=1440&limit=5000", BAD_PARAM),
        (f"/api/hotspots?window=15&cells={FAR}&res=8&resolution=8&k=1", BAD_PARAM),
        ("/api/released", 200),
        ("/api/released?hours=3", 200),
        ("/api/released?hours=168", 200),
        ("/api/released?hours=169", (400, "bad_hours")),
        ("/api/released?hours=0", (400, "bad_hours")),
        ("/api/released?hours=24&hours=1", (400, "bad_hours")),
        ("/api/released?hours=24&window=15", BAD_PARAM),
        (f"/api/released?hours=24&unit={p.others[0]}&agreement=mciu-3&k=1", BAD_PARAM),
        # its forecast: from its released table; horizons 1, 8, 24; its own places only, however named
        ("/api/forecast", 200),
        ("/api/forecast?horizon=1", 200),
        ("/api/forecast?horizon=8", 200),
        ("/api/forecast?horizon=24", 200),
        (f"/api/forecast?area={p.zone}", 200),
        (f"/api/forecast?area={p.zone}&horizon=24", 200),
        ("/api/forecast?horizon=6", (400, "bad_horizon")),
        ("/api/forecast?horizon=8&horizon=1", (400, "bad_horizon")),
        (f"/api/forecast?area={p.others[0]}", OUT_OF_SCOPE),
        (f"/api/forecast?area={p.others[1]}", OUT_OF_SCOPE),
        ("/api/forecast?area=jurisdiction", OUT_OF_SCOPE),
        (f"/api/forecast?area=area:{quote(FORECAST_CANARY)}", OUT_OF_SCOPE),
        (f"/api/forecast?area=h3:{h3.cell_to_parent(inside, 7)}", OUT_OF_SCOPE),
        (f"/api/forecast?area={inside}", OUT_OF_SCOPE),
        (f"/api/forecast?area={p.zone}&area={p.others[0]}", (400, "bad_area")),
        ("/api/forecast?window=15", BAD_PARAM),
        (f"/api/forecast?horizon=8&cells={FAR}&k=1&basis=worker", BAD_PARAM),
        ("/api/audit", FORBIDDEN),
        ("/api/audit?actor=sup-1", FORBIDDEN),
        ("/api/audit/export?format=csv", FORBIDDEN),
        ("/api/audit/export?format=jsonl", FORBIDDEN),
        ("/api/audit%2fexport", None),
        ("/api/audit/../alerts", None),
        ("/healthz", 200),
        ("/metrics", FORBIDDEN),
    ]
    # outlines: its own res-8 cells only (no res-7 parent, no finer child, no cell of another zone)
    paths.append(("/api/cells?ids=" + ",".join([*others, inside]), OUT_OF_SCOPE))
    paths += [(f"/api/cells?ids={c}", OUT_OF_SCOPE) for c in others]
    paths += [(f"/api/cells?ids={inside}", 200), (f"/api/cells?ids={inside},{p.inside2}", 200)]
    paths.append(("/api/cells?ids=" + ",".join([inside] * 501), (400, "bad_ids")))
    paths.append(("/api/cells?ids=" + quote("'; DROP TABLE cells; --"), (400, "bad_ids")))
    paths.append((f"/api/cells?ids={inside}&res=7", BAD_PARAM))
    # a cell's history: never, for any cell, valid or not (the role is checked before the cell)
    for c in [*others, inside, p.inside2, "nonsense", f"{FAR},{inside}"]:
        paths += [(f"/api/cells/{c}/history", FORBIDDEN), (f"/api/cells/{c}/history?hours=6&step=1", FORBIDDEN)]
    paths += [(f"/api/cells/{h3.cell_to_parent(inside, 5)}/history?hours=168&step=1", FORBIDDEN)]
    paths += [(f"/api/cells/{inside}/history?hours=1&step=60&cell={FAR}", FORBIDDEN), ("/api/cells/../audit/history", None)]
    # an alert's page: its own alerts only; every other id, existing or not, opaque or the detector's, the same 404
    paths += [(f"/api/alerts/{a}/records", 200) for a in mine]
    paths += [(f"/api/alerts/{a}/records", NOT_FOUND) for a in others]
    paths += [(f"/api/alerts/{quote(a, safe='')}/records", NOT_FOUND) for a in detector_ids]
    paths += [(f"/api/alerts/{a}/records", NOT_FOUND) for a in detector_ids[:3]]  # not URL-encoded
    paths += [
        ("/api/alerts/a-" + "0" * 24 + "/records", NOT_FOUND),
        ("/api/alerts/" + mine[0].upper() + "/records", NOT_FOUND),
        ("/api/alerts/" + "a" * 5000 + "/records", NOT_FOUND),
        ("/api/alerts/" + quote(f"{mine[0]}/../{others[0]}", safe="") + "/records", NOT_FOUND),
        ("/api/alerts/" + quote(sids[0], safe="") + "/records", NOT_FOUND),
        (f"/api/alerts/{others[0]}/records?as=supervisor", BAD_PARAM),
        (f"/api/alerts/{mine[0]}/records?role=supervisor&k=1", BAD_PARAM),
        (f"/api/alerts/{others[0]}/../{mine[0]}/records", None),
        ("/api/alerts/%2A/records", NOT_FOUND),
        ("/api/alerts//records", NOT_FOUND),
    ]
    return paths


def scan(probe: Probe, truth: Truth) -> list[str]:
    """Every leak in what the partner received."""
    p = probe.partner
    units = p.units()
    leaks: list[str] = []

    def leak(r: Received, what: str) -> None:
        leaks.append(f"{r.where}: {what}")

    for r in probe.received:
        text = r.body.decode("utf-8", "replace")
        for canary in CANARIES:
            if canary in text:
                leak(r, f"planted value {canary!r}")
        for raw in truth.alerts.values():
            if raw["id"] in text:
                leak(r, f"detector alert id {raw['id']!r}")
        for cell in set(CELL.findall(text)):
            if h3.is_valid_cell(cell) and cell not in p.cells and cell not in r.sent:
                leak(r, f"cell {cell} (resolution {h3.get_resolution(cell)}) outside its zone")
        for sid in set(STREAM_ID.findall(text)):  # not even one it sent itself (refusals do not echo them)
            leak(r, f"stream id {sid}")
        try:
            body = json.loads(r.body)
        except ValueError:
            continue
        for key in _keys(body):
            if key in FORBIDDEN_KEYS:
                leak(r, f"field {key!r}")
        if not isinstance(body, dict):
            continue
        for view in _alert_views(body):
            leaks.extend(f"{r.where}: {w}" for w in _check_view(view, p, truth))
        leaks.extend(f"{r.where}: {w}" for w in _check_records(body, truth))
        for what, cursor in _ids(body):
            if not isinstance(cursor, str) or not CURSOR.fullmatch(cursor):
                leak(r, f"{what} {cursor!r} is not a sealed cursor")
        if body.get("type") == "action":
            action = body["action"]
            if set(action) != PARTNER_ACTION_KEYS:
                leak(r, f"action fields {sorted(action)}")
            if action.get("alert_id") not in truth.visible:
                leak(r, f"action on alert {truth.alerts.get(action.get('alert_id'), {}).get('id', action.get('alert_id'))}")
            if not _minute(action.get("at")):
                leak(r, f"action time {action.get('at')!r} finer than the minute")
        leaks.extend(f"{r.where}: {w}" for w in _check_counts(body, units, truth))
        leaks.extend(f"{r.where}: {w}" for w in _check_forecast(body, p, truth))
        if isinstance(body.get("zones"), list):
            ids = [z["id"] if isinstance(z, dict) else z for z in body["zones"]]
            if set(ids) - {p.zone}:
                leak(r, f"zones {ids}")
        if isinstance(body.get("units"), list):
            ids = [u.get("id", u.get("unit")) if isinstance(u, dict) else u for u in body["units"]]
            if set(ids) - set(units):
                leak(r, f"units {ids}")
    return leaks


def _keys(obj) -> list[str]:
    if isinstance(obj, dict):
        return [k for k, v in obj.items() for k in [k, *_keys(v)]]
    if isinstance(obj, list):
        return [k for v in obj for k in _keys(v)]
    return []


def _numbers(obj, path: str = "") -> list[tuple[str, object]]:
    """Every number in ``obj`` with its dotted path (booleans are not numbers here)."""
    if isinstance(obj, dict):
        return [n for k, v in obj.items() for n in _numbers(v, f"{path}.{k}" if path else str(k))]
    if isinstance(obj, list):
        return [n for v in obj for n in _numbers(v, path)]
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        return [(path, obj)]
    return []


def _minute(t: object) -> bool:
    """A time floored to the minute (a float: partners get no integer)."""
    return isinstance(t, float) and t % 60 == 0


def _alert_views(body: dict) -> list[dict]:
    if body.get("type") == "alert":
        return [body["alert"]]
    if isinstance(body.get("alerts"), list):
        return [a["alert"] for a in body["alerts"]]
    if isinstance(body.get("records"), list) and "id" in body:  # an alert's page (/api/alerts/{id}/records)
        return [rec["alert"] for rec in body["records"] if rec.get("type") == "alert"]
    return []


def _check_records(body: dict, truth: Truth) -> list[str]:
    """An alert's page: one of its own alerts; each entry at a minute; actions as {action, at}; no view twice in a row."""
    if not (isinstance(body.get("records"), list) and "id" in body):
        return []
    out = []
    if body["id"] not in truth.visible:
        out.append(f"the page of an alert it may not see: {body['id']!r}")
    previous = None
    for rec in body["records"]:
        if set(rec) not in ({"type", "at", "alert"}, {"type", "at", "action"}) or rec["type"] not in rec:
            out.append(f"record fields {sorted(rec)}")
            continue
        if not _minute(rec["at"]):
            out.append(f"record time {rec['at']!r} finer than the minute")
        if rec["type"] == "action":
            if set(rec["action"]) != PARTNER_RECORD_ACTION_KEYS or not _minute(rec["action"].get("at")):
                out.append(f"action {rec['action']!r}")
        else:
            if rec["alert"].get("id") != body["id"]:
                out.append(f"a record of another alert {rec['alert'].get('id')!r} on the page of {body['id']!r}")
            if rec["alert"] == previous:
                out.append("the same view twice in a row: it counts updates the view withholds")
            previous = rec["alert"]
    return out


def _ids(body: dict) -> list[tuple[str, object]]:
    """The resume ids a partner was given: of frames, of /api/alerts entries and its last_id."""
    out: list[tuple[str, object]] = []
    if body.get("type") in ("alert", "action", "caught_up"):
        out.append((f"{body['type']} id", body.get("id")))
    if "last_id" in body:
        out.append(("last_id", body["last_id"]))
    if isinstance(body.get("alerts"), list):
        out += [("alerts id", a.get("id")) for a in body["alerts"]]
    return out


def _check_view(v: dict, p: Partner, truth: Truth) -> list[str]:
    out = []
    keys = set(v) - {"status"}
    if keys != PARTNER_ALERT_KEYS:
        out.append(f"alert fields {sorted(keys ^ PARTNER_ALERT_KEYS)} beyond or missing from the partner view")
    raw = truth.alerts.get(v.get("id"))
    if v.get("id") not in truth.visible:
        out.append(f"alert outside its zone or below k: {raw['id'] if raw else v.get('id')}")
    if not re.fullmatch(r"a-[0-9a-f]{24}", str(v.get("id"))):
        out.append(f"alert id {v.get('id')!r} is not opaque")
    if set(v.get("zones", [])) - {p.zone} or set(v.get("units", [])) - set(p.units()):
        out.append(f"alert zones {v.get('zones')} units {v.get('units')}")
    if CELL.search(json.dumps(v)):
        out.append("a cell in an alert view")
    cats = v.get("categories")
    if not isinstance(cats, list) or set(cats) - CATEGORY_NAMES:
        out.append(f"categories {cats!r}")
    elif raw is not None and cats != sorted(c for c, n in raw["categories"].items() if c in CATEGORY_NAMES and n >= K):
        out.append(f"categories {cats} are not those with at least k calls")
    if isinstance(v.get("status"), dict) and set(v["status"]) - PARTNER_STATUS_KEYS:
        out.append(f"status fields {sorted(v['status'])}")
    for path, n in _numbers(v):
        if path not in ALERT_TIMES:
            out.append(f"number {path} = {n!r} in an alert view")
        elif not _minute(n):
            out.append(f"{path} = {n!r}: times finer than the minute")
    return out


def _check_counts(body: dict, units: dict[str, frozenset[str]], truth: Truth) -> list[str]:
    """A partner's counts (the counts frame, /api/hotspots, /api/released): each value one of its released table."""
    out: list[str] = []

    def window(at: object, keys: str) -> float | None:
        """The start of the window ending at ``at``, which must be closed, aligned and settled."""
        if at is None:
            return None
        if not isinstance(at, int | float) or at % (WINDOW_MIN * 60) or at + SETTLE_S > truth.watermark:
            out.append(f"{keys} of a window ending at {at!r}: not a closed, aligned, settled window")
            return None
        return float(at) - WINDOW_MIN * 60

    def values(unit: str, groups: object, start: float | None, where: str) -> None:
        if unit not in units:
            out.append(f"{where}: unit {unit!r} is not its own")
            return
        if not isinstance(groups, dict) or set(groups) != {"all"}:
            out.append(f"{where}: groups {groups!r}")
            return
        n = groups["all"]
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < K):
            out.append(f"{where}: count {n!r} below k")
        elif start is not None and n != truth.released(units[unit], start):
            out.append(f"{where}: count {n!r}, the released table says {truth.released(units[unit], start)!r}")

    def header(keys: frozenset[str], what: str) -> None:
        if set(body) != keys:
            out.append(f"{what} fields {sorted(set(body) ^ keys)}")
        if body.get("window_min") != WINDOW_MIN or body.get("k") != K:
            out.append(f"{what} window_min {body.get('window_min')!r} k {body.get('k')!r}")
        if body.get("cells") not in (None, {}, []) or body.get("zones") not in (None, {}):
            out.append(f"{what} cells {body.get('cells')!r} zones {body.get('zones')!r}")

    if body.get("type") == "counts":
        header(COUNTS_FRAME_KEYS, "counts")
        start = window(body.get("at"), "counts")
        for unit, groups in (body.get("units") or {}).items():
            values(unit, groups, start, f"counts {unit}")
    elif "windows" in body:
        header(RELEASED_KEYS, "released")
        for w in body["windows"]:
            if set(w) != RELEASED_WINDOW_KEYS or w.get("minutes") != WINDOW_MIN:
                out.append(f"released window {w!r}")
                continue
            start = window(w["start"] + WINDOW_MIN * 60, "released")
            for unit, groups in w["values"].items():
                values(unit, groups, start, f"released {w['start']:.0f} {unit}")
    elif "window_min" in body and "type" not in body and "basis" not in body:  # /api/hotspots
        header(HOTSPOTS_KEYS, "hotspots")
        start = window(body.get("at"), "hotspots")
        for row in body.get("units") or []:
            if set(row) != HOTSPOT_ROW_KEYS:
                out.append(f"hotspot fields {sorted(set(row) ^ HOTSPOT_ROW_KEYS)}")
                continue
            values(row["unit"], row["calls"], start, f"hotspots {row['unit']}")
            n = (row["calls"] or {}).get("all")
            if (row["at_least"], row["exact"]) != (n or 0, n):
                out.append(f"hotspots {row['unit']}: at_least {row['at_least']!r} exact {row['exact']!r} for {n!r}")
    return out


def released_table(p: Partner, truth: Truth) -> list[dict]:
    """The windows of the partner's released table at the truth's watermark, as ``/api/released`` must give them."""
    plan = p.scope().plan
    assert plan is not None
    units = p.units()
    return [
        {"start": s, "minutes": WINDOW_MIN, "values": {u: {"all": truth.released(cells, s)} for u, cells in units.items()}}
        for s in closed_windows(plan, truth.watermark, settle_s=SETTLE_S)
    ]


def _check_forecast(body: dict, p: Partner, truth: Truth) -> list[str]:
    """A partner's forecast (/api/forecast, the forecast frame): its own units, nothing of the worker's set, and exactly
    what gateway.partnerforecast makes of its released table (so it tells nothing that table does not)."""
    if body.get("type") == "forecast":
        out = [f"forecast frame fields {sorted(set(body) ^ FORECAST_FRAME_KEYS)}"] if set(body) != FORECAST_FRAME_KEYS else []
        view = body.get("forecast")
    elif "basis" in body:
        out, view = [], body
    else:
        return []
    if not isinstance(view, dict) or set(view) != FORECAST_KEYS or view.get("basis") != "released":
        return [*out, f"forecast fields {sorted(set(view or {}) ^ FORECAST_KEYS)} basis {(view or {}).get('basis')!r}"]
    units = p.units()
    rows = view["units"]
    if not isinstance(rows, list) or any(set(u) != FORECAST_UNIT_KEYS or u["id"] not in units for u in rows):
        return [*out, f"forecast units {rows!r}"]
    plan = p.scope().plan
    assert plan is not None
    names = [{"id": u.id, "name": u.name, "zones": list(u.zones)} for u in plan.units if u.id in {r["id"] for r in rows}]
    horizon = view["horizon_h"]
    expected = partner_forecast(released_table(p, truth), names, window_min=WINDOW_MIN, k=K, tz=datetime.UTC, horizon_h=horizon)
    if view != expected:
        out.append("a forecast that is not its released table's (gateway.partnerforecast)")
    return out


@pytest.mark.parametrize("who", sorted(PARTNERS))
def test_partner_trying_everything_sees_nothing_outside_its_zone(gw, prefix, r, who):
    """Whatever a partner sends or asks, every byte it receives stays inside its zone and inside what the policy lets through."""
    p = PARTNERS[who]
    scope = p.scope()
    other_cells = [sorted(ZONES[z].cells)[0] for z in p.others]
    assert p.near not in p.cells and all(c not in p.cells for c in other_cells) and set(p.units()) == {p.zone}
    # the calls first: a released window is frozen the first time it is computed
    now = time.time()
    buckets, last_hour = plant_counts(r, prefix, p, other_cells, now)
    plant_worker_forecast(r, prefix, p, now)
    sup = gw.ws(token("supervisor", subject="sup-1"))
    recv_until(sup, lambda f: f["type"] == "caught_up")
    probe = Probe(p)
    _, first = probe.http(gw, "/api/alerts?state=all")  # where its replay of everything starts: a cursor, not a stream id
    assert first is not None and first["alerts"] == []
    before = publish_alerts(r, prefix, p, other_cells, "a")
    recv_until(sup, lambda f: f["type"] == "alert" and f["alert"]["id"] == before["far-closed"][1]["id"])

    # the feed: a replay of everything, a live one that tries every filter
    replay = probe.ws(gw, "replay-all", last_id=first["last_id"])
    live = probe.ws(gw, "live")
    assert replay is not None and live is not None
    probe.keep("replay-all", recv_until(replay, lambda f: f["type"] == "caught_up")[1])
    probe.keep("live", recv_until(live, lambda f: f["type"] == "caught_up")[1])
    replies = [probe.send(live, f"live msg {i}", message) for i, message in enumerate(hostile_messages(p))]
    # fewer than the rate's burst: this test is about scope, not floods; only the last two (its own zone, the county) pass
    assert [f["type"] for f in replies] == ["error"] * (len(replies) - 2) + ["subscribed"] * 2
    # acting on alerts by the detector's ids (which name cells), on another socket: 20 refusals would close it
    acting = probe.ws(gw, "acting")
    assert acting is not None
    for i, (_, alert) in enumerate(list(before.values())[:9]):
        for message in ({"type": "ack", "alert_id": alert["id"]}, {"type": "resolve", "alert_id": alert["id"], "note": "x"}):
            assert probe.send(acting, f"acting msg {i}", message)["type"] == "error"
    acting.close()

    # resuming: from every cursor it was given (accepted), from stream ids and forged cursors (refused at the handshake)
    _, listed = probe.http(gw, "/api/alerts?state=all")
    assert listed is not None
    given = [a["id"] for a in listed["alerts"]] + [listed["last_id"], probe.frames("caught_up")[0]["id"]]
    other = next(a for a in AGREEMENTS if a != p.agreement)
    good = [f"resume-cursor-{i}" for i in range(len(given))]
    bad = [
        ("resume-zero", "0-0"),
        ("resume-0", "0"),
        ("resume-far", before["far"][0]),
        ("resume-inside", before["inside"][0]),
        ("bad-last-id", "../../etc"),
        ("future-last-id", "99999999999999-0"),
        ("huge-last-id", "9" * 50 + "-0"),
        ("other-agreement", cursors.seal(CURSOR_KEY, before["far"][0], other)),
        ("other-key", cursors.seal(cursors.cursor_key(b"another-secret" * 3), before["far"][0], p.agreement)),
        ("tampered", given[0][:20] + ("A" if given[0][20] != "A" else "B") + given[0][21:]),
        ("empty-cursor", "c-"),
        ("long-cursor", "c-" + "A" * 200),
    ]
    for label, last_id in [*zip(good, given, strict=True), *bad]:
        ws = probe.ws(gw, label, last_id=last_id)
        if ws is not None:
            probe.keep(label, recv_until(ws, lambda f: f["type"] == "caught_up")[1] + drain(ws, max_s=1.5))
            ws.close()
    refused = {
        r.where.split(" ")[1]: (r.where.rsplit(" ", 1)[1], json.loads(r.body)["error"]) for r in probe.received if "handshake" in r.where
    }
    assert refused == {label: ("400", "bad_last_id") for label, _ in bad}

    # live traffic while connected: alerts, a supervisor's notes
    after = publish_alerts(r, prefix, p, other_cells, "b")
    recv_until(sup, lambda f: f["type"] == "alert" and f["alert"]["id"] == after["far-closed"][1]["id"])
    for name, action in (("inside", "ack"), ("far", "resolve"), ("near", "ack")):
        alert_id = after[name][1]["id"]
        sup.send(json.dumps({"type": action, "alert_id": alert_id, "note": NOTE_CANARY}))
        recv_until(sup, lambda f, alert_id=alert_id: f["type"] == "action" and f["action"]["alert_id"] == alert_id)
    for ws, label in ((replay, "replay-all"), (live, "live")):
        # the action on its alert, then a few counts of its released table
        probe.keep(label, recv_until(ws, lambda f: f["type"] == "action")[1] + drain(ws, max_s=2))
        ws.close()

    # the HTTP API, every path, with the answer each must get
    batches = (before, after)
    mine = [alert_id_for(batch[name][1]["id"], scope) for batch in batches for name in VISIBLE]
    not_mine = sorted({alert_id_for(a["id"], scope) for batch in batches for _, a in batch.values()} - set(mine))
    detector_ids = sorted({a["id"] for batch in batches for _, a in batch.values()})
    paths = hostile_paths(p, other_cells, [sid for sid, _ in before.values()], mine, not_mine, detector_ids)
    wrong = []
    for path, expected in paths:
        status, body = probe.http(gw, path)
        got = (status, (body or {}).get("error")) if isinstance(expected, tuple) else status
        if expected is not None and got != expected:
            wrong.append(f"{path}: {got}, expected {expected}")
        if expected is None and status == 200:
            wrong.append(f"{path}: 200")
    assert probe.http(gw, "/metrics", tok="")[0] == 401
    sup.close()
    assert wrong == [], "\n".join(wrong)

    all_alerts = {alert_id_for(a["id"], scope): a for batch in (before, after) for _, a in batch.values()}
    visible = {alert_id_for(batch[name][1]["id"], scope) for batch in (before, after) for name in VISIBLE}
    truth = Truth(all_alerts, visible, buckets, now)
    leaks = scan(probe, truth)
    print(f"\n{who}: {probe.inputs} inputs tried, {len(probe.received)} frames and bodies scanned, {len(leaks)} leaks")
    assert leaks == [], "\n".join(leaks[:50])

    # and the partner did see what it may: its alerts, generalized, the handling of one, its released counts
    seen = {f["alert"]["id"] for f in probe.frames("alert")}
    assert seen == visible
    inside = next(f["alert"] for f in probe.frames("alert") if f["alert"]["id"] == alert_id_for(before["inside"][1]["id"], scope))
    assert (inside["units"], inside["zones"], inside["categories"], inside["extent"]) == ([p.zone], [p.zone], ["TRAFFIC"], "area")
    acted = [f["action"] for f in probe.frames("action")]
    assert acted and {a["alert_id"] for a in acted} == {alert_id_for(after["inside"][1]["id"], scope)}
    _, page = probe.http(gw, f"/api/alerts/{alert_id_for(after['inside'][1]['id'], scope)}/records")
    assert page is not None and page["records"][-1]["type"] == "action"
    assert set(page["records"][-1]["action"]) == PARTNER_RECORD_ACTION_KEYS
    shown = truth.released(p.cells, last_hour)
    assert shown == 4  # 3 + 1 calls in the zone, in the first and the last minute of the hour; none of the thousands around it
    assert any(f["units"] == {p.zone: {"all": shown}} and f["at"] == last_hour + 3600 for f in probe.frames("counts"))
    _, hot = probe.http(gw, "/api/hotspots")
    assert hot is not None and hot["at"] == last_hour + 3600
    assert [(u["unit"], u["calls"], u["at_least"], u["exact"]) for u in hot["units"]] == [(p.zone, {"all": shown}, shown, shown)]
    _, released = probe.http(gw, "/api/released?hours=3")
    assert released is not None
    assert [(w["start"], w["values"]) for w in released["windows"][-2:]] == [
        (last_hour - 3600, {p.zone: {"all": None}}),  # K - 1 calls: withheld
        (last_hour, {p.zone: {"all": shown}}),
    ]
    _, forecast = probe.http(gw, "/api/forecast")
    assert forecast is not None and forecast["after"] == last_hour + 3600
    assert [(u["id"], len(u["windows"])) for u in forecast["units"]] == [(p.zone, 8)]
    assert all(w["days"] and w["text"].startswith("usually fewer than 3 calls") for w in forecast["units"][0]["windows"])
    assert [f["forecast"] for f in probe.frames("forecast")][:1] == [forecast]  # pushed once a released window is out
    assert scan(probe, truth) == []  # these last answers too


def test_cell_history_is_forbidden_to_partners_whatever_the_cell_and_finer_cells_are_bad_for_supervisors(gw, prefix, r):
    """/api/cells/{cell}/history: a partner is refused 403 forbidden for any cell (its own, coarse, fine, outside, not a cell),
    before the cell is looked at, so the answer says nothing about it; a supervisor asking for a cell finer than res 8 gets
    400 bad_cell, and the history of any res-8 cell."""
    minute = int(time.time() // 60)
    p = PARTNERS["transit"]
    r.hset(f"{prefix}:b:{minute}", mapping={f"{p.inside}|TRAFFIC": 5, f"{FAR}|TRAFFIC": 6})
    r.set(f"{prefix}:wm:call:0", time.time())
    partner, sup = p.token(), token("supervisor")
    fine = [h3.cell_to_center_child(base, res) for res in (9, 12, 15) for base in (p.inside, FAR)]
    coarse = [h3.cell_to_parent(p.inside, 7), h3.cell_to_parent(p.inside, 5), h3.cell_to_parent(FAR, 6)]
    for cell in [p.inside, FAR, p.near, *coarse, *fine, "nonsense"]:
        status, body = gw.get_json(f"/api/cells/{cell}/history?hours=1&step=60", partner)
        assert (status, set(body), body["error"]) == (403, {"error", "message"}, "forbidden"), (cell, body)
        assert "bins" not in json.dumps(body) and " 5" not in body["message"]
    for res in (9, 12, 15):
        for base in (p.inside, FAR):
            status, body = gw.get_json(f"/api/cells/{h3.cell_to_center_child(base, res)}/history", sup)
            assert (status, body["error"]) == (400, "bad_cell"), (res, body)
            assert f"resolution {res}" in body["message"] and "resolution 8" in body["message"]
    _, far = gw.get_json(f"/api/cells/{FAR}/history?hours=1&step=60", sup)
    assert far["bins"][-1]["categories"] == {"TRAFFIC": 6}
    assert gw.get_json("/api/cells/nonsense/history", sup)[1]["error"] == "bad_cell"


def test_a_partner_socket_never_carries_a_frame_it_did_not_pass_through_the_policy(gw, prefix, r):
    """A partner connected from before any alert receives, over a mixed burst, exactly its zone's alerts on at least k calls,
    as partner views (no cell, no count, no stream id)."""
    p = PARTNERS["school"]
    ws = gw.ws(p.token())
    recv_until(ws, lambda f: f["type"] == "caught_up")
    other = sorted(ZONES["septa-lansdale"].cells)[0]
    shown = []
    for i in range(50):
        cell, observed = ((p.inside, 9), (FAR, 9), (p.near, 9), (other, 9), (p.inside, K - 1))[i % 5]
        shown.append(cell == p.inside and observed >= K)
        publish(r, prefix, planted(make_alert(f"surge:{cell}:{uuid.uuid4().hex[:6]}", (cell,), observed=observed)))
    frames = drain(ws, max_s=8)
    alerts = [f for f in frames if f["type"] == "alert"]
    assert len(alerts) == sum(shown) == 10
    assert all((a["alert"]["units"], a["alert"]["zones"]) == ([p.zone], [p.zone]) for a in alerts)
    assert all(set(a["alert"]) == PARTNER_ALERT_KEYS and CURSOR.fullmatch(a["id"]) for a in alerts)
    numbers = [n for a in alerts for n in _numbers(a["alert"])]
    assert {path for path, _ in numbers} == {"started_at", "at"} and all(_minute(n) for _, n in numbers)
    text = json.dumps(frames)
    assert not any(c in text for c in CANARIES) and not CELL.search(text) and not STREAM_ID.search(text)
    ws.close()


def test_partner_close_and_reconnect_resumes_from_sealed_cursors_only(gw, prefix, r):
    """A partner resumes from each cursor it was ever given (of alerts, of 'caught_up', of /api/alerts), gets what followed
    it in its zone and nothing outside; a raw stream id, even of its own alert, is refused at the handshake."""
    p = PARTNERS["transit"]
    scope = p.scope()
    ws = gw.ws(p.token())
    start = recv_until(ws, lambda f: f["type"] == "caught_up")[0]["id"]
    ws.close()
    published = []
    for cell in (FAR, p.inside, p.near, p.inside, FAR):
        alert = planted(make_alert(f"surge:{cell}:{uuid.uuid4().hex[:6]}", (cell,)))
        published.append((publish(r, prefix, alert), alert))
    mine = [(sid, alert_id_for(a["id"], scope)) for sid, a in published if a["cells"] == [p.inside]]
    assert len(mine) == 2
    ws = gw.ws(p.token(), last_id=start)
    _, frames = recv_until(ws, lambda f: f["type"] == "caught_up")
    ws.close()
    assert [f["alert"]["id"] for f in frames if f["type"] == "alert"] == [opaque for _, opaque in mine]
    # each alert frame's cursor is its stream id, sealed; 'caught_up' seals the same id afresh, so it looks different
    alert_cursors = [f["id"] for f in frames if f["type"] == "alert"]
    assert [stream_id_for(c, scope) for c in alert_cursors] == [sid for sid, _ in mine]
    caught_up = frames[-1]["id"]
    assert stream_id_for(caught_up, scope) == published[-1][0] and caught_up not in alert_cursors
    _, listed = gw.get_json("/api/alerts?state=all", p.token())
    given = [start, *alert_cursors, caught_up, *(a["id"] for a in listed["alerts"]), listed["last_id"]]
    received = list(frames)
    for cursor in given:
        assert CURSOR.fullmatch(cursor), cursor
        ws = gw.ws(p.token(), last_id=cursor)
        got = recv_until(ws, lambda f: f["type"] == "caught_up")[1] + drain(ws, max_s=1)
        ws.close()
        # exactly its alerts after the cursor's stream id
        after = stream_id_for(cursor, scope)
        expect = [opaque for sid, opaque in mine if tuple(map(int, sid.split("-"))) > tuple(map(int, after.split("-")))]
        assert [f["alert"]["id"] for f in got if f["type"] == "alert"] == expect, cursor
        received += got
    alerts = [f for f in received if f["type"] == "alert"]
    assert alerts and all(a["alert"]["zones"] == [p.zone] for a in alerts)
    text = json.dumps(received)
    assert not CELL.search(text) and not STREAM_ID.search(text) and not any(c in text for c in CANARIES)
    for last_id in ["0-0", *(sid for sid, _ in published)]:
        with pytest.raises(InvalidStatus) as refused:
            gw.ws(p.token(), last_id=last_id)
        assert refused.value.response.status_code == 400 and json.loads(refused.value.response.body)["error"] == "bad_last_id"


def test_the_scan_finds_planted_leaks():
    """The scan is no rubber stamp: a supervisor's view, a cell, a statistic, a count, a stream id, a low or inexact count,
    a planted value and a note are each reported."""
    p = PARTNERS["transit"]
    scope = p.scope()
    raw = planted(make_alert(f"surge:{p.inside}:x", (p.inside, FAR), observed=12, categories={"TRAFFIC": 10, "EMS": 2}))
    opaque = alert_id_for(raw["id"], scope)
    elsewhere = planted(make_alert(f"surge:{FAR}:x", (FAR,)))
    hour = 1_700_002_800.0  # an hour's start
    truth = Truth(
        {opaque: raw, alert_id_for(elsewhere["id"], scope): elsewhere},
        {opaque},
        {int(hour // 60): {f"{p.inside}|TRAFFIC": 5, f"{p.inside}|ALL": 5, f"{p.near}|TRAFFIC": 900}},
        hour + 3600 + SETTLE_S,
    )
    cursor = cursors.seal(CURSOR_KEY, "1700000000000-0", p.agreement)
    generalized = {
        "id": opaque, "kind": "surge", "state": "open", "severity": "medium", "extent": "area", "started_at": 60.0, "at": 120.0,
        "units": [p.zone], "zones": [p.zone], "categories": ["TRAFFIC"], "reason": "More calls than usual near Lansdale station",
    }  # fmt: skip
    counts = {"type": "counts", "at": hour + 3600, "window_min": 60, "k": K, "cells": {}, "zones": {}, "units": {p.zone: {"all": 5}}}
    row = {"unit": p.zone, "name": "Lansdale station", "zones": [p.zone], "calls": {"all": 5}, "at_least": 5, "exact": 5}
    hotspots = {"at": hour + 3600, "window_min": 60, "k": K, "units": [row], "cells": [], "zones": {}}
    window = {"start": hour, "minutes": 60, "values": {p.zone: {"all": 5}}}
    released = {"window_min": 60, "k": K, "groups": ["all"], "units": [{"id": p.zone, "name": "x", "zones": [p.zone]}], "windows": [window]}
    alert = {"type": "alert", "id": cursor, "alert": generalized}
    units = [{"id": p.zone, "name": ZONES[p.zone].name, "zones": [p.zone]}]
    forecast = partner_forecast(released_table(p, truth), units, window_min=60, k=K, tz=datetime.UTC)
    assert forecast["units"][0]["windows"][0]["days"]  # the scan's truth gives it previous days to average
    worse = {**forecast, "units": [{**forecast["units"][0], "windows": [{**w, "low": 2} for w in forecast["units"][0]["windows"]]}]}
    bad = [
        ({**alert, "alert": raw}, "field 'caller'"),
        ({**alert, "alert": {**generalized, "cells": [p.inside]}}, "beyond or missing"),
        ({**alert, "alert": {**generalized, "reason": f"calls near {p.near}"}}, f"cell {p.near}"),
        ({**alert, "alert": {**generalized, "id": alert_id_for(elsewhere["id"], scope)}}, "outside its zone"),
        ({**alert, "alert": {**generalized, "observed": 12}}, "field 'observed'"),
        ({**alert, "alert": {**generalized, "summary": "Calls in Norristown: 9 in 15 minutes"}}, "alert fields ['summary']"),
        ({**alert, "alert": {**generalized, "categories": {"TRAFFIC": 10}}}, "categories"),
        ({**alert, "alert": {**generalized, "categories": ["EMS", "TRAFFIC"]}}, "at least k"),
        ({**alert, "alert": {**generalized, "severity": 2}}, "number severity"),
        ({**alert, "alert": {**generalized, "at": 125.0}}, "finer than the minute"),
        ({**alert, "alert": {**generalized, "status": {"action": "ack", "at": 61.5}}}, "status.at = 61.5"),
        ({**alert, "alert": {**generalized, "status": {"action": "ack", "at": 60.0, "by": "sup"}}}, "field 'by'"),
        ({**alert, "alert": {**generalized, "zones": ["septa-ambler"]}}, "alert zones"),
        ({**alert, "id": "1700000000000-0"}, "stream id 1700000000000-0"),
        ({**alert, "id": "5-0"}, "not a sealed cursor"),
        ({"type": "caught_up", "id": "0-0"}, "not a sealed cursor"),
        ({"last_id": "1700000000000-3", "alerts": []}, "stream id"),
        ({"type": "action", "id": cursor, "action": {"alert_id": opaque, "action": "ack", "at": 60.0, "note": NOTE_CANARY}}, "note-canary"),
        ({"type": "action", "id": cursor, "action": {"alert_id": opaque, "action": "ack", "at": 61.0}}, "action time"),
        ({**counts, "units": {p.zone: {"all": 2}}}, "below k"),
        ({**counts, "units": {p.zone: {"all": 905}}}, "the released table says 5"),
        ({**counts, "units": {p.zone: {"all": None}}}, "the released table says 5"),
        ({**counts, "units": {"septa-ambler": {"all": 9}}}, "not its own"),
        ({**counts, "cells": {h3.cell_to_parent(p.inside, 7): 5}}, "counts cells"),
        ({**counts, "at": hour + 4000}, "not a closed, aligned, settled window"),
        ({**counts, "at": hour + 7200}, "not a closed, aligned, settled window"),
        ({**counts, "zones": {p.zone: 5}}, "zones"),
        ({**hotspots, "units": [{**row, "at_least": 2}]}, "at_least 2"),
        ({**hotspots, "units": [{**row, "calls": {"all": 6}, "at_least": 6, "exact": 6}]}, "says 5"),
        ({**hotspots, "units": [{**row, "count": 5}]}, "field 'count'"),
        ({**released, "windows": [{**window, "values": {p.zone: {"all": 7}}}]}, "says 5"),
        ({**released, "windows": [{**window, "values": {p.zone: {"all": 5, "EMS": None}}}]}, "groups"),
        ({**released, "windows": [{**window, "start": hour + 60}]}, "not a closed, aligned, settled window"),
        ({"cell": p.inside, "bins": [{"start": 0, "minutes": 60, "categories": {"EMS": 2}}]}, "field 'bins'"),
        ({"zones": [{"id": "septa-ambler"}]}, "zones"),
        ({"units": [{"id": "septa-ambler"}]}, "units"),
        (worse, "not its released table's"),
        ({**forecast, "units": [{**units[0], "id": "septa-ambler", "windows": []}]}, "forecast units"),
        ({**forecast, "hotspots": {"cells": []}}, "forecast fields ['hotspots']"),
        ({"type": "forecast", "version": 7, "forecast": forecast}, "forecast frame fields ['version']"),
        ({"type": "forecast", "forecast": {**forecast, "basis": "worker"}}, "basis 'worker'"),
    ]
    for body, expected in bad:
        probe = Probe(p, [Received("fabricated", json.dumps(body).encode(), "", False)])
        leaks = scan(probe, truth)
        assert any(expected in leak for leak in leaks), (expected, leaks)
    clean = [
        alert,
        counts,
        hotspots,
        released,
        forecast,
        {"type": "forecast", "forecast": forecast},
        {"type": "caught_up", "id": cursor},
        {"last_id": cursor, "alerts": [{"id": cursor, "alert": generalized}]},
    ]
    received = [Received("fabricated", json.dumps(body).encode(), "", False) for body in clean]
    assert scan(Probe(p, received), truth) == []


def test_a_partner_resuming_after_an_ack_gets_its_time_to_the_minute_only(gw, prefix, r):
    """An alert acknowledged while a partner was away comes back in its replay with its status: {action, at}, the time
    floored to the minute as in the action frame and in /api/alerts (not when to the second a supervisor acted)."""
    p = PARTNERS["transit"]
    ws = gw.ws(p.token())
    start = recv_until(ws, lambda f: f["type"] == "caught_up")[0]["id"]
    ws.close()
    sup = gw.ws(token("supervisor", subject="sup-1"))
    recv_until(sup, lambda f: f["type"] == "caught_up")
    alert = planted(make_alert(f"surge:{p.inside}:{uuid.uuid4().hex[:6]}", (p.inside,)))
    publish(r, prefix, alert)
    recv_until(sup, lambda f: f["type"] == "alert")
    sup.send(json.dumps({"type": "ack", "alert_id": alert["id"], "note": NOTE_CANARY}))
    recv_until(sup, lambda f: f["type"] == "action")
    sup.close()
    ws = gw.ws(p.token(), last_id=start)
    frames = recv_until(ws, lambda f: f["type"] == "caught_up")[1]
    ws.close()
    _, listed = gw.get_json("/api/alerts", p.token())
    views = [f["alert"] for f in frames if f["type"] == "alert"] + [a["alert"] for a in listed["alerts"]]
    assert len(views) == 2 and all(v["status"]["action"] == "ack" for v in views)
    assert [f["action"]["at"] % 60 for f in frames if f["type"] == "action"] == [0]
    assert [v["status"]["at"] % 60 for v in views] == [0, 0]
