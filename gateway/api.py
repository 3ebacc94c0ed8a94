"""The gateway's HTTP API: a route table and one handler per route (adapter: handlers read through the gateway's store).

=====================================  ==============  ======================================================
route                                  roles           answers
=====================================  ==============  ======================================================
``GET /api/me``                        all             the caller's claims, zones, the jurisdiction's name and
                                                       time zone, the dashboard's settings, and for partners
                                                       its agreement and released units
``GET /api/alerts``                    all             alerts in scope, newest first, and ``last_id`` to resume
                                                       from; filters (:mod:`gateway.search`, on each view):
                                                       ``state=open|closed|all``, ``kind``, ``min_severity``,
                                                       ``since``, ``until``, ``category``, ``q``, ``limit``;
                                                       supervisors and commanders also ``area``
``GET /api/alerts/{id}/records``       all             one alert's records (open, updates, close) and the actions
                                                       on it, oldest first, as the role may see them
                                                       (:mod:`gateway.records`); ``{id}`` as the caller knows it
                                                       (URL-encoded); 404 ``not_found`` alike for an unknown id and
                                                       an alert out of scope
``GET /api/hotspots``                  all             supervisors and commanders: calls per cell over ``window``
                                                       (15, 60, 180 or 1440 min), each with the name of the
                                                       area holding it; partners: their units in the newest
                                                       released window
``GET /api/released``                  partners        the agreement's released windows over the last ``hours``
``GET /api/cells/{cell}/history``      supervisors,    a cell's calls per ``step`` (15, 60 or 1440 min) over
                                       commanders      ``hours``; commanders: their cells, from their zone's start
``GET /api/overview``                  supervisors,    at a glance, at the worker's watermark: calls over 15 min, 1 h
                                       commanders      and 24 h and per 15 min over 24 h, each against the usual
                                       (:mod:`gateway.overview`), open incidents, median response
                                       times; filters ``category``, ``area``; commanders: their
                                       cells, from their zone's start
``GET /api/cells?ids=a,b``             all             outlines of cells in scope (partners: their zones' cells;
                                                       supervisors and commanders: with their area's name)
``GET /api/zones``                     all             zones in scope, with their cells and outline
``GET /api/places``                    all             the map's base layer: the jurisdiction's outline (boundary, else
                                                       box, else null); supervisors and commanders also its named
                                                       areas (a FeatureCollection: name, geometry); cacheable (ETag)
``GET /api/forecast``                  all             supervisors and commanders: the worker's forecast set
                                                       (:mod:`gateway.forecasts`; commanders only what lies in
                                                       their cells), narrowed by ``area`` and ``horizon``;
                                                       ``ready`` false and why before the first; partners: their view
                                                       (:mod:`gateway.partnerforecast`), 404 without it
``GET /api/allocation``                supervisors     the next shift's recommended units per area
                                                       (:mod:`detectors.allocation`) for ``units``, ``floor``,
                                                       ``cap``, with its skew report and the plan adopted last
``POST /api/allocation``               supervisors     adopt that recommendation (same parameters, no body):
                                                       stored in ``P:allocation`` and audited
``GET /api/audit``, ``/export``        supervisors     the audit log, as JSON or CSV / JSON lines
``GET /metrics``                       supervisors     Prometheus text: clients by role, deliveries, refusals
``GET /feeds/cap.atom``,               partners,       the agreement's alerts as CAP 1.2 messages in an Atom
``/feeds/cap/{identifier}.xml``        supervisors     feed, and each message (:mod:`gateway.feeds.routes`)
``GET /api/feeds/deadletters``         supervisors     partners' webhook deliveries given up
``GET /api/doors``                     supervisors     the doors calls come in by (pollers, CAD sources), each
                                                       ``ok``, ``quiet``, ``stalled``/``silent`` or ``failing``
                                                       with a sentence (:mod:`streams.intake.doors`)
=====================================  ==============  ======================================================

Partners' numbers come only from their released table (:mod:`gateway.disclosure`);
every partner and commander read is audited (``read``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

import h3
from redis.exceptions import RedisError
from websockets.http11 import Response

from detectors.allocation import DEFAULT_CAP, Allocation, allocate, default_floor, skew
from gateway import forecasts, records
from gateway.audit import AuditAction, AuditRecord, to_csv
from gateway.disclosure import hot_units, minute, oldest_listed
from gateway.feeds import routes as feed_routes
from gateway.http import HttpError, choice, epoch, integer, json_response, one, only, response
from gateway.hub import parse_entry
from gateway.overview import CELL_USUAL_WINDOWS_MIN, STEP_MIN, TILE_WINDOWS_MIN, cell_usual, day_shifts, figures, window_shifts
from gateway.policy import Scope, cursor_for, view, view_counts, visible_cells, zone_counts
from gateway.search import parse, searchable
from gateway.tokens import PARTNER_ROLES, Claims, Role
from gateway.zones import ZONE_RESOLUTION, Zone
from streams.counting.keys import ALL
from streams.counting.rolling import minute_of
from streams.ingest.schema import CATEGORIES
from streams.intake import doors as intake_doors
from streams.runtime.status import median_from_bins

if TYPE_CHECKING:
    from gateway.server import Gateway

#: hot-spot windows (minutes): fixed, so that answers for nearby windows cannot be differenced and each is cached
HOTSPOT_WINDOWS = (15, 60, 180, 1440)
#: history steps (minutes) for supervisors and commanders
HISTORY_STEPS = (15, 60, 1440)
#: longest ``/api/places`` answer (Montgomery's boundary and 62 areas: about 90 kB); longer areas are left out
MAX_PLACES_BYTES = 2_000_000
#: how long a browser may keep ``/api/places`` (the profile is read once, at the gateway's start)
PLACES_MAX_AGE_S = 3600
#: most res-8 cells times minutes one history call reads (a week of 10 cells, a day of 69)
MAX_HISTORY_CELL_MINUTES = 100_000
ALL_ROLES = frozenset(Role)
PRECISE = frozenset({Role.SUPERVISOR, Role.COMMANDER})
#: longest alert id looked up (detector ids are about 40 characters, partners' 26)
MAX_ALERT_ID = 200
#: most units an allocation is asked for
MAX_UNITS = 10_000
#: the one answer to an alert a caller may not see, whether it exists or not (nothing tells the two apart)
NO_SUCH_ALERT = "no alert with this id that this token may see (or older than the gateway keeps)"


@dataclass(frozen=True)
class ApiRequest:
    """One authenticated API call: what the handler needs, nothing else."""

    path: str
    params: tuple[str, ...]
    query: dict[str, list[str]]
    claims: Claims
    scope: Scope
    remote: str
    now: float
    #: the request's ``If-None-Match`` (a cacheable answer compares its ETag with it)
    if_none_match: str | None = None


Handler = Callable[["Gateway", ApiRequest], Awaitable[Response]]


@dataclass(frozen=True)
class Route:
    """``pattern`` is the path split on ``/``, with ``*`` for one parameter segment."""

    pattern: tuple[str, ...]
    handler: Handler
    roles: frozenset[Role]
    method: str = "GET"

    def match(self, parts: list[str]) -> tuple[str, ...] | None:
        if len(parts) != len(self.pattern):
            return None
        params = []
        for p, want in zip(parts, self.pattern, strict=True):
            if want == "*":
                params.append(p)
            elif p != want:
                return None
        return tuple(params)


def find_route(path: str, method: str = "GET") -> tuple[Route, tuple[str, ...]] | None:
    """The route of ``method`` ``path`` and its parameters, or None; 405 when the path is served with other methods.

    >>> route, params = find_route("/api/cells/872aac959ffffff/history")
    >>> route.handler.__name__, params
    ('cell_history', ('872aac959ffffff',))
    >>> find_route("/api/allocation", "POST")[0].handler.__name__
    'adopt_allocation'
    >>> find_route("/api/me", "POST")
    Traceback (most recent call last):
    ...
    gateway.http.HttpError: /api/me is read with GET only
    """
    parts = path.strip("/").split("/")
    methods = []
    for route in ROUTES:
        params = route.match(parts)
        if params is not None:
            if route.method == method:
                return route, params
            methods.append(route.method)
    if methods:
        raise HttpError(405, "method_not_allowed", f"/{'/'.join(parts)} is read with {' or '.join(methods)} only")
    return None


# ---------------------------------------------------------------------- handlers


async def me(gw: Gateway, req: ApiRequest) -> Response:
    only(req.query, set())
    body: dict = {
        "claims": req.claims.to_json(),
        "zones": [z.id for z in req.scope.zones],
        "k": req.scope.k,
        "tiles": gw.settings.tiles,
        "basemap": gw.settings.basemap.to_json() if gw.settings.basemap else None,
        # every role: the zone the dashboard shows times in (the jurisdiction's, not the browser's)
        "jurisdiction": gw.places.to_json(),
        # WF_GATEWAY_PEERS: the gateways the dashboard moves to, in order, when the one it is on is lost
        "gateways": list(gw.settings.peers),
    }
    plan = req.scope.plan
    if plan is not None:
        agreement = gw.agreements[plan.agreement]
        body["agreement"] = agreement.to_json({z.id: z.name for z in gw.zones.values()})
        body["units"] = [{"id": u.id, "name": u.name, "zones": list(u.zones)} for u in plan.units if u.id in req.scope.unit_ids]
    return json_response(200, body)


async def alerts(gw: Gateway, req: ApiRequest) -> Response:
    """Alerts in scope, newest first, filtered by :mod:`gateway.search` on each one's view (never on the raw record)."""
    partner = req.scope.role in PARTNER_ROLES
    search = parse(req.query, precise=not partner)
    limit = integer(req.query, "limit", 100, 1, 1000)
    out = []
    for alert_id, (sid, raw) in reversed(gw.hub.alerts.items()):
        v = view(raw, req.scope, req.now)
        if v is None:
            continue
        status = gw.hub.status.get(alert_id)
        if not partner:
            v["status"] = status
        elif status is not None:
            v["status"] = {"action": status["action"], "at": minute(status["at"])}  # not who, not the note
        if not search.matches(v, searchable(v, req.scope)):
            continue
        out.append({"id": cursor_for(sid, req.scope), "alert": v})
        if len(out) >= limit:
            break
    return json_response(200, {"last_id": cursor_for(gw.hub.position, req.scope), "alerts": out})


async def alert_records(gw: Gateway, req: ApiRequest) -> Response:
    """One alert's records and the actions on it, oldest first, as the caller may see them (:mod:`gateway.records`).

    The alert must be one the hub keeps (:meth:`gateway.hub.Hub.known_as`) whose latest record the caller may
    see (as in ``/api/alerts``); every other id, a partner's detector id included, gets the same 404.
    """
    only(req.query, set())
    seen_id = unquote(req.params[0])
    alert_id = gw.hub.known_as(seen_id, req.scope) if len(seen_id) <= MAX_ALERT_ID else None
    known = None if alert_id is None else gw.hub.alerts.get(alert_id)
    if alert_id is None or known is None or view(known[1], req.scope, req.now) is None:
        raise HttpError(404, "not_found", NO_SUCH_ALERT)
    entries = [parse_entry(sid, fields) for sid, fields in await gw.store.entries(list(gw.hub.record_ids.get(alert_id, ())))]
    mine = [(e.alert, e.action) for e in entries if e.alert_id == alert_id]
    return json_response(200, {"id": seen_id, "records": records.alert_records(mine, req.scope, req.now, latest=known[1])})


async def hotspots(gw: Gateway, req: ApiRequest) -> Response:
    q = req.query
    plan = req.scope.plan
    if plan is not None:
        only(q, {"window"})
        choice(q, "window", plan.window_min, (plan.window_min,))  # partners: their agreement's window only
        _shares(gw, req, "counts")
        latest = await gw.releases.latest(plan, await gw.store.watermark())
        units = [u for u in plan.units if u.id in req.scope.unit_ids]
        released = None if latest is None else latest.for_units(req.scope.unit_ids)
        return json_response(
            200,
            {
                "at": None if latest is None else latest.start + latest.minutes * 60,
                "window_min": plan.window_min,
                "k": plan.k,
                "units": hot_units(released, units),
                "cells": [],
                "zones": {},
            },
        )
    only(q, {"window", "limit", "category"})
    window = choice(q, "window", 15, HOTSPOT_WINDOWS)
    limit = integer(q, "limit", 200, 1, 5000)
    category = one(q, "category")
    if category is not None and category not in CATEGORIES:
        raise HttpError(400, "bad_category", f"category must be one of {', '.join(CATEGORIES)}, got {category[:40]!r}")
    wm = await gw.store.watermark()
    if wm is None:
        return json_response(200, {"at": None, "window_min": window, "category": category, "cells": [], "zones": {}})
    counts = await gw.store.cell_counts(wm, window, 8, category or ALL)
    shown = view_counts(counts, req.scope, req.now)
    top = sorted(shown.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    names = gw.places.named(c for c, _ in top)  # only the cells this precise scope is shown
    usual, days = await _cells_usual(gw, req, wm, window, [c for c, _ in top], category or ALL)
    return json_response(
        200,
        {
            "at": wm,
            "window_min": window,
            "category": category,
            "usual_days": days,
            "cells": [
                {"cell": c, "count": n, "usual": usual.get(c), "area": names.get(c), "boundary": [list(p) for p in h3.cell_to_boundary(c)]}
                for c, n in top
            ],
            "zones": zone_counts(counts, req.scope, req.now),
        },
    )


async def released(gw: Gateway, req: ApiRequest) -> Response:
    plan = req.scope.plan
    assert plan is not None
    only(req.query, {"hours"})
    _shares(gw, req, "history")
    hours = integer(req.query, "hours", 24, 1, plan.history_h)
    wm = await gw.store.watermark()
    since = None if wm is None else oldest_listed(plan, wm, settle_s=gw.releases.settle_s, hours=hours)
    windows = await gw.releases.windows(plan, wm, since=since)
    return json_response(
        200,
        {
            "window_min": plan.window_min,
            "k": plan.k,
            "groups": list(plan.group_names),
            "units": [{"id": u.id, "name": u.name, "zones": list(u.zones)} for u in plan.units if u.id in req.scope.unit_ids],
            "windows": [w.for_units(req.scope.unit_ids).to_json() for w in windows[-max(1, hours * 60 // plan.window_min) :]],
        },
    )


async def cell_history(gw: Gateway, req: ApiRequest) -> Response:
    cell = req.params[0]
    if not h3.is_valid_cell(cell):
        raise HttpError(400, "bad_cell", f"{cell[:40]!r} is not an H3 cell id")
    only(req.query, {"hours", "step"})
    hours = integer(req.query, "hours", 24, 1, 24 * 7)
    step = choice(req.query, "step", 15, HISTORY_STEPS)
    res = h3.get_resolution(cell)
    if res > ZONE_RESOLUTION:
        # a bad request whoever asks, and whether or not the cell is in scope (so it tells nothing about scope)
        message = f"cell {cell} is resolution {res}; calls are counted down to resolution {ZONE_RESOLUTION}: ask for its parent"
        raise HttpError(400, "bad_cell", message)
    visible = visible_cells(req.scope)
    if visible is None:
        # counted before they are listed: a res-0 cell has 5.7 million res-8 children
        n = h3.cell_to_children_size(cell, ZONE_RESOLUTION)
        cells = list(h3.cell_to_children(cell, ZONE_RESOLUTION)) if n * hours * 60 <= MAX_HISTORY_CELL_MINUTES else []
    else:
        # only the caller's own res-8 cells inside the asked cell: never the rest of a coarse cell
        cells = sorted(c for c in visible if c == cell or (res < ZONE_RESOLUTION and h3.cell_to_parent(c, res) == cell))
        n = len(cells)
    if not n:
        raise HttpError(403, "out_of_scope", f"cell {cell} is outside what this token may see")
    if n * hours * 60 > MAX_HISTORY_CELL_MINUTES:
        raise HttpError(
            400,
            "history_too_large",
            f"{n} res-{ZONE_RESOLUTION} cells over {hours} h is more than {MAX_HISTORY_CELL_MINUTES} cell-minutes; "
            "ask for fewer hours or a finer cell",
        )
    wm = await gw.store.watermark()
    if wm is None:
        return json_response(200, {"cell": cell, "bins": []})
    async with gw.history_slots:
        bins = await gw.store.history(cells, wm, hours * 60, step)
    if req.scope.role is Role.COMMANDER:
        # a commander reads its zone from the zone's start on, never the history before it
        start = _commander_start(req.scope, cells)
        bins = [b for b in bins if start is not None and b["start"] >= start]
    return json_response(200, {"cell": cell, "at": wm, "bins": bins})


async def overview(gw: Gateway, req: ApiRequest) -> Response:
    """At a glance, at the worker's watermark ``wm``: calls now against the usual (:mod:`gateway.overview`).

    "Usual" is, for the same clock time on each of the previous ``usual_days`` days (up to 7, only days whose
    buckets are still retained), the mean of the calls in that window; ``low`` / ``high`` are the min and max
    over those days. ``category`` (one of :data:`streams.ingest.schema.CATEGORIES`) and ``area`` (a named area
    of the profile, case ignored) narrow the calls; a commander reads only its cells, and nothing before its
    zones' start (``since``: earlier bins and tiles have ``calls`` null). ``open_incidents`` is null with a
    ``category`` (the worker keeps them per cell only); ``response`` is null unless the answer is the whole
    jurisdiction in every category (the worker keeps response times per coarse cell, which neither a named
    area nor a commander's cells follow, and not per category).
    """
    q = req.query
    only(q, {"category", "area"})
    category = one(q, "category")
    if category is not None and category not in CATEGORIES:
        raise HttpError(400, "bad_category", f"category must be one of {', '.join(CATEGORIES)}, got {category[:40]!r}")
    area_text = one(q, "area")
    area = cells = None
    if area_text is not None:
        found = gw.places.area_cells(area_text, ZONE_RESOLUTION) if area_text.strip() else None
        if found is None:
            known = "this jurisdiction names no areas" if gw.places.areas is None else "name one as /api/places names it"
            raise HttpError(400, "bad_area", f"no area is called {area_text[:60]!r}: {known}")
        area, cells = found
    visible = visible_cells(req.scope)
    start: float | None = None
    if visible is not None:
        cells = visible if cells is None else cells & visible
        # a commander reads from its zones' start on, as /api/cells/{cell}/history (a zone without one: from now)
        start = _commander_start(req.scope, sorted(visible))
    wm = await gw.store.watermark()
    since = start if start is not None or visible is None else wm
    body: dict = {"at": wm, "category": category, "area": area, "since": since}
    if wm is None:
        empty = [{"window_min": w, "calls": None, "usual": None, "low": None, "high": None} for w in TILE_WINDOWS_MIN]
        body.update(
            usual_days=0, tiles=empty, series={"step_min": STEP_MIN, "bins": []}, open_incidents=None, response=None, response_areas=None
        )
        return json_response(200, body)
    end = minute_of(wm)
    since_minute = None if since is None else math.ceil(since / 60)
    reads = await gw.store.overview_reads(
        end,
        day_shifts(wm, gw.places.zone),
        None if cells is None else frozenset(cells),
        category or ALL,
        since_minute,
        open_incidents=category is None,
        response=visible is None and area is None and category is None,
    )
    body.update(figures(reads.counts, end, reads.shifts, since_minute), open_incidents=reads.open_incidents)
    body["response"] = None if reads.response is None else {k: _median(s) for k, s in reads.response.items()}
    body["response_areas"] = None if reads.response_areas is None else _response_areas(gw, reads.response_areas)
    return json_response(200, body)


#: areas listed with their response times, busiest first
RESPONSE_AREAS = 8


def _response_areas(gw: Gateway, areas: Mapping[str, Mapping[str, Mapping[str, int]]]) -> list[dict]:
    """The busiest areas' medians (the worker's coarsest counted cells), each named by the area holding its centre."""
    ranked = sorted(areas.items(), key=lambda kv: (-kv[1].get("dispatch", {}).get("n", 0), kv[0]))[:RESPONSE_AREAS]
    return [
        {"cell": cell, "name": gw.places.area_of(cell) if h3.is_valid_cell(cell) else None, **{k: _median(s) for k, s in kinds.items()}}
        for cell, kinds in ranked
        if any(s.get("n") for s in kinds.values())
    ]


async def _cells_usual(
    gw: Gateway, req: ApiRequest, wm: float, window: int, cells: list[str], category: str = ALL
) -> tuple[dict[str, float], int]:
    """Each of ``cells``' usual calls in the window: the mean over the previous days (same wall-clock time in the
    jurisdiction's zone, up to 7) whose window is retained and counted and, for a commander, after its zones' start;
    and how many days that is. Only for the short windows (CELL_USUAL_WINDOWS_MIN); each day's read is the cached
    ``cell_counts`` every dashboard shares."""
    if window not in CELL_USUAL_WINDOWS_MIN or not cells:
        return {}, 0
    floor = await gw.store.counted_floor()
    visible = visible_cells(req.scope)
    if floor is not None and visible is not None:
        start = _commander_start(req.scope, sorted(visible))
        floor = max(floor, math.ceil(start / 60)) if start is not None else None  # a zone without a start: from now
    end = minute_of(wm)
    shifts = window_shifts(end, window, day_shifts(wm, gw.places.zone), floor)
    days = [view_counts(await gw.store.cell_counts(wm - s * 60, window, ZONE_RESOLUTION, category), req.scope, req.now) for s in shifts]
    return cell_usual(days, cells), len(days)


def _median(stats: Mapping[str, int]) -> dict[str, int | str | None]:
    n = stats.get("n", 0)
    return {"n": n, "median": median_from_bins(dict(stats)) if n else None}


async def cells(gw: Gateway, req: ApiRequest) -> Response:
    """Outlines of the asked cells this scope may see: any for supervisors; partners and commanders their own res-8 cells."""
    only(req.query, {"ids"})
    ids = [c for c in (one(req.query, "ids") or "").split(",") if c]
    if not ids or len(ids) > 500:
        raise HttpError(400, "bad_ids", "ids must list 1 to 500 H3 cell ids, comma-separated")
    bad = [c[:20] for c in ids if not h3.is_valid_cell(c)]
    if bad:
        raise HttpError(400, "bad_ids", f"not H3 cell ids: {', '.join(bad[:5])}")
    visible = visible_cells(req.scope)
    if visible is not None:
        outside = [c for c in ids if c not in visible]
        if outside:
            raise HttpError(403, "out_of_scope", f"{len(outside)} cell(s) are outside what this token may see")
    rows: list[dict[str, object]] = [{"cell": c, "boundary": [list(p) for p in h3.cell_to_boundary(c)]} for c in ids]
    if req.scope.role in PRECISE:
        # the names of the areas holding them, for the map's tooltips; partners read their own zones' names only
        names = gw.places.named(ids)
        for row, c in zip(rows, ids, strict=True):
            row["area"] = names.get(c)
    return json_response(200, {"cells": rows})


async def zones(gw: Gateway, req: ApiRequest) -> Response:
    only(req.query, set())
    return json_response(200, {"zones": [zone_json(z, req.now) for z in req.scope.zones]})


async def places(gw: Gateway, req: ApiRequest) -> Response:
    """The map's base layer: the outline for every role; the named areas for supervisors and commanders only.

    Partners get the outline only: a profile's area outlines may be data rather than public geography (the
    shipped Montgomery areas were drawn from the cells where at least 3 calls of a municipality happened), so
    they are told only as much as :mod:`gateway.disclosure` releases, never these shapes.
    """
    only(req.query, set())
    body, etag = gw.places.answer(req.scope.role in PRECISE, MAX_PLACES_BYTES)
    resp = response(200, body, "application/json", [("ETag", etag), ("Vary", "Authorization")])
    del resp.headers["Cache-Control"]  # the default no-store; the answer only changes when the gateway restarts
    resp.headers["Cache-Control"] = f"private, max-age={PLACES_MAX_AGE_S}"
    return resp


async def forecast(gw: Gateway, req: ApiRequest) -> Response:
    """The worker's forecast set as the caller may see it (:mod:`gateway.forecasts`), narrowed by ``area`` and
    ``horizon``; partners get only their agreement's view (:mod:`gateway.partnerforecast`)."""
    plan = req.scope.plan
    if plan is not None:
        return await _partner_forecast(gw, req)
    only(req.query, {"area", "horizon"})
    text_h = one(req.query, "horizon")
    horizon = None if text_h is None else integer(req.query, "horizon", 0, 0, 10_000)
    version, fs = await _forecast_set(gw)
    if fs is None or not forecasts.is_ready(fs):
        # an answer, not an error: a dashboard opened before the worker's first set is working as it should
        return json_response(200, {"version": version, "ready": False, "message": forecasts.not_ready_message(fs), "areas": {}})
    try:
        body = forecasts.answer(forecasts.scoped(fs, visible_cells(req.scope)), one(req.query, "area"), horizon)
    except forecasts.ForecastQueryError as exc:
        raise HttpError(400, exc.code, exc.message) from None
    return json_response(200, {"version": version, "ready": True, **body})


async def _partner_forecast(gw: Gateway, req: ApiRequest) -> Response:
    """A partner's forecast (:func:`gateway.partnerforecast.partner_forecast_view`, from its released table only);
    403 ``not_shared`` when its agreement shares no history; without that module the path does not exist for them."""
    try:
        from gateway import partnerforecast
    except ModuleNotFoundError:
        raise HttpError(404, "not_found", f"no such path {req.path!r}") from None
    only(req.query, {"area", "horizon"})
    horizon = choice(req.query, "horizon", forecasts.SHIFT_HOURS, forecasts.HORIZONS)
    body = await partnerforecast.partner_forecast_view(gw, req.scope, area=one(req.query, "area"), horizon_h=horizon)
    if body is None:
        raise HttpError(403, "not_shared", "this agreement does not share history, which its forecast is made from")
    return json_response(200, body)


async def _forecast_set(gw: Gateway) -> tuple[int, dict | None]:
    version, text = await gw.store.forecast()
    return version, forecasts.parse_set(text)


async def _recommend(gw: Gateway, req: ApiRequest) -> tuple[int, dict, Allocation, dict | None, dict]:
    """The recommendation for the query's ``units``, ``floor`` and ``cap`` from the latest forecast set and the plan
    adopted last: (forecast version, set, allocation, adopted plan, the parameters as read)."""
    q = req.query
    only(q, {"units", "floor", "cap"})
    units = integer(q, "units", 0, 0, MAX_UNITS) if one(q, "units") is not None else None
    if units is None:
        raise HttpError(400, "bad_units", f"units is required: the units on the next shift, 0 to {MAX_UNITS}")
    cap_pts = integer(q, "cap", round(100 * DEFAULT_CAP), 1, 100)
    version, fs = await _forecast_set(gw)
    if fs is None or not forecasts.is_ready(fs):
        raise HttpError(503, "no_forecast", forecasts.not_ready_message(fs))
    demands = forecasts.demands(fs)
    floor = integer(q, "floor", default_floor(units, len(demands)), 0, MAX_UNITS)
    if floor * len(demands) > units:
        raise HttpError(400, "bad_floor", f"floor {floor} for {len(demands)} areas needs {floor * len(demands)} units, only {units} given")
    adopted = await gw.store.allocation()
    previous = adopted.get("shares") if adopted else None
    plan = allocate(units, demands, floor=floor, cap=cap_pts / 100, previous=previous if isinstance(previous, dict) else None)
    return version, fs, plan, adopted, {"units": units, "floor": floor, "cap": cap_pts / 100}


async def allocation(gw: Gateway, req: ApiRequest) -> Response:
    """The next shift's recommended units per area, why each, and how the shares compare with the calls of the last
    24 h and with the residents of each named area, when the profile gives them ("population not configured" otherwise)."""
    version, fs, plan, adopted, _ = await _recommend(gw, req)
    wm = await gw.store.watermark()
    counts = await gw.store.cell_counts(wm, 1440, ZONE_RESOLUTION) if wm is not None else None
    calls = None if counts is None else forecasts.calls_by_unit(fs, counts)
    population = _population(gw, plan)
    return json_response(
        200,
        {
            "version": version,
            "issued": fs.get("issued"),
            "shift": _shift(fs),
            **plan.to_json(),
            "skew": [row.to_json() for row in skew(plan, calls, population, calls_label="the last 24 h's calls")],
            "population": "configured" if population is not None else "population not configured",
            "adopted": adopted,
        },
    )


def _population(gw: Gateway, plan: Allocation) -> dict[str, float] | None:
    """Residents per allocation unit when the profile gives every unit's (its named areas); None otherwise.

    Never partial: a share of population over some areas only would read as a share of the jurisdiction's."""
    given = getattr(gw.places.areas, "population", None)
    residents = given() if callable(given) else {}
    if not residents or any(row.name not in residents for row in plan.rows):
        return None
    return {row.key: residents[row.name] for row in plan.rows}


async def adopt_allocation(gw: Gateway, req: ApiRequest) -> Response:
    """Adopt the recommendation for these parameters: it becomes the plan the next one's cap is measured against."""
    version, fs, plan, _, params = await _recommend(gw, req)
    c = req.claims
    adopted = {
        "adopted_at": req.now,
        "by": c.subject,
        "role": c.role.value,
        "agency": c.agency,
        **params,
        "forecast_version": version,
        "issued": fs.get("issued"),
        "shift": _shift(fs),
        "shares": {k: round(v, 6) for k, v in plan.shares().items()},
        "units_by_area": {r.key: r.units for r in plan.rows},
    }
    detail = {k: adopted[k] for k in ("units", "floor", "cap", "forecast_version", "issued", "units_by_area")}
    record = AuditRecord(AuditAction.ALLOCATION_ADOPT, c.subject, c.role.value, c.agency, remote=req.remote, detail=detail, at=req.now)
    try:
        # audited first: a plan is never adopted without its record
        await gw.audit.record(record)
        await gw.store.save_allocation(adopted)
    except (RedisError, OSError) as exc:
        raise HttpError(503, "unavailable", f"the plan could not be recorded ({exc}); it was not adopted: try again") from None
    return json_response(200, {"adopted": adopted})


def _shift(fs: Mapping) -> dict | None:
    """The 8 hours the allocation is for: the jurisdiction's (or any area's) shift window."""
    for e in (fs.get("areas") or {}).values():
        f = (e.get("by_horizon") or {}).get(str(forecasts.SHIFT_HOURS)) if isinstance(e, dict) else None
        if isinstance(f, dict):
            return {"start": f.get("start"), "end": f.get("end")}
    return None


async def audit(gw: Gateway, req: ApiRequest) -> Response:
    rows = await _audit_rows(gw, req, set())
    return json_response(200, {"records": [{"id": sid, **r.to_fields(), "detail": r.detail} for sid, r in rows]})


async def audit_export(gw: Gateway, req: ApiRequest) -> Response:
    rows = await _audit_rows(gw, req, {"format"})
    fmt = one(req.query, "format") or "csv"
    if fmt == "csv":
        body, ctype = to_csv(rows).encode(), "text/csv; charset=utf-8"
    elif fmt == "jsonl":
        body = "".join(json.dumps({"id": sid, **r.to_fields(), "detail": r.detail}) + "\n" for sid, r in rows).encode()
        ctype = "application/x-ndjson"
    else:
        raise HttpError(400, "bad_format", f"format must be csv or jsonl, got {fmt[:40]!r}")
    return response(200, body, ctype, [("Content-Disposition", f'attachment; filename="watchfloor-audit.{fmt}"')])


async def doors(gw: Gateway, req: ApiRequest) -> Response:
    """The live doors' health as of now: a stalled poller or a silent CAD told apart from a quiet city."""
    only(req.query, set())
    try:
        found = await gw.store.doors()
    except RedisError as exc:
        raise HttpError(503, "unavailable", f"the doors' status cannot be read ({exc}); try again") from None
    now = req.now
    listed = [intake_doors.read_door(m, f, now) for m, f in found if not intake_doors.is_forgotten(f, now)]
    return json_response(200, {"at": now, "doors": [d.as_json() for d in listed]})


async def metrics(gw: Gateway, req: ApiRequest) -> Response:
    only(req.query, set())
    return response(200, gw.metrics_text().encode(), "text/plain; version=0.0.4")


ROUTES: tuple[Route, ...] = (
    Route(("api", "me"), me, ALL_ROLES),
    Route(("api", "alerts"), alerts, ALL_ROLES),
    Route(("api", "alerts", "*", "records"), alert_records, ALL_ROLES),
    Route(("api", "hotspots"), hotspots, ALL_ROLES),
    Route(("api", "released"), released, PARTNER_ROLES),
    Route(("api", "cells", "*", "history"), cell_history, PRECISE),
    Route(("api", "overview"), overview, PRECISE),
    Route(("api", "cells"), cells, ALL_ROLES),
    Route(("api", "zones"), zones, ALL_ROLES),
    Route(("api", "places"), places, ALL_ROLES),
    Route(("api", "forecast"), forecast, ALL_ROLES),
    Route(("api", "allocation"), allocation, frozenset({Role.SUPERVISOR})),
    Route(("api", "allocation"), adopt_allocation, frozenset({Role.SUPERVISOR}), "POST"),
    Route(("api", "audit"), audit, frozenset({Role.SUPERVISOR})),
    Route(("api", "audit", "export"), audit_export, frozenset({Role.SUPERVISOR})),
    Route(("metrics",), metrics, frozenset({Role.SUPERVISOR})),
    # partners' feeds (gateway.feeds.routes): the CAP feed, and the webhooks' dead letters
    Route(("feeds", "cap.atom"), feed_routes.cap_atom, PARTNER_ROLES | {Role.SUPERVISOR}),
    Route(("feeds", "cap", "*"), feed_routes.cap_message, PARTNER_ROLES | {Role.SUPERVISOR}),
    Route(("api", "feeds", "deadletters"), feed_routes.dead_letters, frozenset({Role.SUPERVISOR})),
    Route(("api", "doors"), doors, frozenset({Role.SUPERVISOR})),
)


# ---------------------------------------------------------------------- helpers


def zone_json(z: Zone, now: float) -> dict:
    return {**z.to_json(), "active": z.active(now)}


def _shares(gw: Gateway, req: ApiRequest, what: str) -> None:
    plan = req.scope.plan
    assert plan is not None
    if what not in gw.agreements[plan.agreement].shares:
        raise HttpError(403, "not_shared", f"agreement {plan.agreement!r} does not share {what}")


def _commander_start(scope: Scope, cells: list[str]) -> float | None:
    starts = [z.active_from for z in scope.zones if z.cells & set(cells) and z.active_from is not None]
    return min(starts) if starts else None


async def _audit_rows(gw: Gateway, req: ApiRequest, extra: set[str]) -> list:
    q = req.query
    only(q, {"since", "until", "actor", "action", "target", "limit"} | extra)
    rows = await gw.audit.query(
        since=epoch(q, "since"),
        until=epoch(q, "until"),
        actor=one(q, "actor"),
        action=one(q, "action"),
        target=one(q, "target"),
        limit=integer(q, "limit", 1000, 1, 100_000),
    )
    action = AuditAction.QUERY if req.path == "/api/audit" else AuditAction.EXPORT
    c = req.claims
    await gw.audit.record(AuditRecord(action, c.subject, c.role.value, c.agency, remote=req.remote, detail={"rows": len(rows)}, at=req.now))
    return rows
