"""Client subscriptions: which of the alerts a client may see it wants (pure: no I/O).

A ``subscribe`` message (:class:`gateway.protocol.Subscribe`) becomes a
:class:`Filter` with :func:`build_filter`; the hub then sends an alert when
:func:`gateway.policy.view` returns a view and :func:`matches` accepts it.
A filter only narrows: :func:`~gateway.policy.view` has already decided what
the client may see, and a polygon is cut down to the client's own cells.

Matching is done on the view, not on the detector's alert, so it reveals
nothing the view does not: a partner's polygon selects the zones of the
released units it overlaps (partner views name units and zones, never cells),
and categories are matched on the categories its views show.

Examples
--------
>>> from gateway.disclosure import Plan, units_for
>>> from gateway.policy import Scope
>>> from gateway.protocol import Subscribe
>>> from gateway.tokens import Role
>>> from gateway.zones import Zone
>>> zone = Zone("septa-ambler", "Ambler station", "station", "SEPTA", frozenset({"882aac9599fffff"}), {})
>>> plan = Plan("septa", units_for([zone]))
>>> scope = Scope(Role.TRANSIT, "SEPTA", "desk", (zone,), plan=plan, unit_ids=("septa-ambler",))
>>> f = build_filter(Subscribe(zones=("septa-ambler",), categories=("TRAFFIC",), min_severity="medium"), scope, {zone.id: zone}, now=0.0)
>>> matches(f, {"kind": "surge", "severity": "high", "zones": ["septa-ambler"], "categories": ["TRAFFIC"]}, {})
True
>>> matches(f, {"kind": "surge", "severity": "low", "zones": ["septa-ambler"], "categories": ["TRAFFIC"]}, {})
False
>>> build_filter(Subscribe(zones=("septa-lansdale",)), scope, {zone.id: zone}, now=0.0)
Traceback (most recent call last):
...
gateway.protocol.ProtocolError: zone 'septa-lansdale' is not one of this token's zones (septa-ambler)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from detectors.types import AlertKind
from gateway.policy import Scope, severity_rank, visible_cells
from gateway.protocol import SEVERITIES, ProtocolError, Subscribe
from gateway.tokens import PARTNER_ROLES, Role
from gateway.zones import Zone, ZoneError, polygon_cells
from streams.ingest.schema import CATEGORIES


@dataclass(frozen=True)
class Filter:
    """What a client asked for; ``None`` means no restriction.

    ``zones`` are zone ids (matched on the view's ``zones``); ``cells`` come from a
    polygon, at res 8 (a partner's polygon becomes the zones of the units it
    overlaps instead: its views carry no cells). An alert is in place when it matches either
    (or when neither is set); feed outages are in every place.
    """

    cells: frozenset[str] | None = None
    categories: frozenset[str] | None = None
    min_severity: str = "low"
    zones: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.min_severity not in SEVERITIES:
            raise ValueError(f"min_severity must be one of {', '.join(SEVERITIES)}, got {self.min_severity!r}")

    @classmethod
    def everything(cls) -> Filter:
        """No restriction: every alert the client's scope lets through."""
        return cls()

    def to_json(self) -> dict[str, Any]:
        """The filter for a ``subscribed`` frame."""
        return {
            "zones": None if self.zones is None else sorted(self.zones),
            "cells": None if self.cells is None else sorted(self.cells),
            "categories": None if self.categories is None else sorted(self.categories),
            "min_severity": self.min_severity,
        }


def build_filter(msg: Subscribe, scope: Scope, zones_by_id: Mapping[str, Zone], now: float) -> Filter:
    """The filter a ``subscribe`` message asks for, within ``scope``; :class:`ProtocolError` otherwise.

    Codes: ``zone_not_allowed`` (a partner or commander names a zone that is not
    its own; unknown ids are reported the same way, so that no one learns which
    other zones exist), ``unknown_zone`` (a supervisor names a zone that does not
    exist), ``bad_polygon``, ``polygon_outside_scope`` (the polygon has no cell in
    the scope), ``unknown_category``, ``bad_zones`` / ``bad_categories`` (an empty
    list: leave the field out for no restriction). ``now`` is not used: whether an
    event zone is active is decided per alert by :func:`gateway.policy.view`.
    """
    del now
    zones = None if msg.zones is None else _zones(msg.zones, scope, zones_by_id)
    cells = None if msg.polygon is None else _polygon(msg.polygon, scope)
    if cells is not None and scope.role in PARTNER_ROLES:
        by_polygon = frozenset(z.id for z in scope.zones if z.cells & cells)
        zones, cells = (by_polygon if zones is None else zones | by_polygon), None
    categories = None
    if msg.categories is not None:
        if not msg.categories:
            raise ProtocolError("bad_categories", f"categories is empty; name some of {', '.join(CATEGORIES)} or leave it out for all")
        unknown = sorted(set(msg.categories) - set(CATEGORIES))
        if unknown:
            raise ProtocolError(
                "unknown_category",
                f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; expected some of {', '.join(CATEGORIES)}",
            )
        categories = frozenset(msg.categories)
    if msg.min_severity not in SEVERITIES:
        raise ProtocolError("bad_severity", f"min_severity must be one of {', '.join(SEVERITIES)}, got {msg.min_severity!r}")
    return Filter(cells=cells, categories=categories, min_severity=msg.min_severity, zones=zones)


def matches(f: Filter, alert_view: Mapping[str, Any], raw_alert: Mapping[str, Any]) -> bool:
    """Whether the client with filter ``f`` wants this alert; ``alert_view`` is what :func:`gateway.policy.view` gave it.

    Severity at least ``min_severity``; if categories are set, one of the view's
    categories among them (a view without categories passes); if zones or cells
    are set, the view touches one of the zones or one of the cells (feed outages
    always pass: they are everywhere).
    """
    if severity_rank(alert_view.get("severity", "low")) < severity_rank(f.min_severity):
        return False
    if f.categories is not None:
        shown = alert_view.get("categories") or ()  # a dict (supervisors) or a list of names (partners)
        if shown and f.categories.isdisjoint(shown):
            return False
    if f.zones is None and f.cells is None:
        return True
    if (raw_alert.get("kind") or alert_view.get("kind")) == AlertKind.FEED_OUTAGE:
        return True
    if f.zones is not None and not f.zones.isdisjoint(alert_view.get("zones") or ()):
        return True
    return f.cells is not None and not f.cells.isdisjoint(alert_view.get("cells") or ())


def _zones(ids: tuple[str, ...], scope: Scope, zones_by_id: Mapping[str, Zone]) -> frozenset[str]:
    if not ids:
        raise ProtocolError("bad_zones", "zones is empty; name some zone ids or leave it out for all")
    if scope.role is Role.SUPERVISOR:
        unknown = [z for z in ids if z not in zones_by_id]
        if unknown:
            raise ProtocolError("unknown_zone", f"unknown zone(s) {', '.join(map(repr, unknown))}")
        return frozenset(ids)
    own = {z.id for z in scope.zones}
    for z in ids:
        if z not in own:
            raise ProtocolError("zone_not_allowed", f"zone {z!r} is not one of this token's zones ({', '.join(sorted(own))})")
    return frozenset(ids)


def _polygon(geometry: dict[str, Any], scope: Scope) -> frozenset[str]:
    try:
        cells = polygon_cells(geometry)
    except ZoneError as exc:
        raise ProtocolError("bad_polygon", str(exc)) from None
    allowed = visible_cells(scope)
    if allowed is None:
        return cells
    cells &= allowed
    if not cells:
        raise ProtocolError("polygon_outside_scope", "the polygon has no cell in this token's zones")
    return cells


def filter_counts(
    f: Filter, cells: Mapping[str, int], zone_counts: Mapping[str, int], scope: Scope, zones_by_id: Mapping[str, Zone]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The part of a ``counts`` frame (already scoped by :mod:`gateway.policy`) that a client's filter asks for.

    With zones or a polygon set, only the cells inside them and the counts of
    the chosen zones remain; categories and severity do not apply to counts.
    (Partners' counts are their released table, not filtered here.)
    """
    if f.zones is None and f.cells is None:
        return dict(cells), dict(zone_counts)
    wanted: set[str] = set(f.cells or ())
    for zid in f.zones or ():
        zone = zones_by_id.get(zid)
        if zone is not None:
            wanted |= zone.cells
    kept_zones = {z: n for z, n in zone_counts.items() if f.zones is None or z in f.zones}
    return {c: n for c, n in cells.items() if c in wanted}, kept_zones
