"""What each role may see of an alert or of the live counts (pure: the gateway's privacy core).

Every alert and every count passes through this module before it leaves the
gateway; nothing a client sends can widen what these functions return.

==============  ===================================  ==========================================================
role            alerts delivered                     what the alert shows
==============  ===================================  ==========================================================
supervisor      all                                  everything the detector wrote, plus severity and zones
commander       touching an event zone while it is   everything, plus severity and the zones touched
                active (and feed outages then)
transit/school  touching one of its agreement's      what :mod:`gateway.disclosure` allows: the units touched,
                units with at least k calls, and     the extent, kind, state, severity, times to the minute,
                every feed outage                    categories with at least k calls; no count, no statistic
==============  ===================================  ==========================================================

Counts follow the same rule: supervisors get every res-8 cell, commanders the
cells of their active zones, partners only their agreement's released table
(:mod:`gateway.disclosure`), never counts computed here.

Partners never see a detector's id (surge ids name their anchor cell,
zone-surge ids an event zone): they get a keyed hash of it, stable for the key
given to :func:`scope_for`; and never a stream id: :func:`cursor_for` seals it
(:mod:`gateway.cursors`).

Examples
--------
>>> from gateway.agreements import Agreement
>>> from gateway.tokens import Claims
>>> from gateway.zones import point_cells
>>> lansdale = Zone("septa-lansdale", "Lansdale station", "station", "SEPTA", point_cells(-75.2838, 40.2418), {})
>>> septa = Agreement("septa", "SEPTA", Role.TRANSIT, ("septa-lansdale",), "Station staff.")
>>> claims = Claims("ops-desk-3", Role.TRANSIT, "SEPTA", (), 2e9, 1e9, "j1", agreement="septa")
>>> scope = scope_for(claims, {lansdale.id: lansdale}, now=1.7e9, agreements={"septa": septa})
>>> inside, outside = sorted(lansdale.cells)[:2], ["882aac941dfffff"]
>>> alert = {"id": f"surge:{inside[0]}:1699999980", "kind": "surge", "state": "open", "started_at": 1699999980.0,
...          "at": 1700000047.5, "cells": inside + outside, "window_min": 15, "observed": 12, "expected": 3.14159,
...          "score": 7.234, "p_value": 5.8e-8, "categories": {"TRAFFIC": 10, "EMS": 2}, "model": "surge-poisson",
...          "model_version": "1", "reason": f"12 calls (9 incidents) in 15 min in 7 cells around {inside[0]}"}
>>> v = view(alert, scope, now=1700000050.0)
>>> v["severity"], v["units"], v["at"], v["categories"], v["extent"]
('medium', ['septa-lansdale'], 1700000040.0, ['TRAFFIC'], 'area')
>>> v["reason"]
'More calls than usual (mostly TRAFFIC) in an area that includes Lansdale station'
>>> sorted(set(alert) & set(v))
['at', 'categories', 'id', 'kind', 'reason', 'started_at', 'state']
>>> view({**alert, "cells": outside}, scope, now=1700000050.0) is None
True
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from detectors.types import AlertKind
from gateway import cursors, disclosure
from gateway.protocol import SEVERITIES
from gateway.tokens import PARTNER_ROLES, Claims, Role
from gateway.zones import Zone

if TYPE_CHECKING:
    from gateway.agreements import Agreement

#: The gateway-wide floor of an agreement's k (``WF_GATEWAY_K``).
DEFAULT_K = 3

# Severity thresholds. A surge score is -log10 of the Poisson tail probability
# (detectors.surge): 6 is one chance in a million per test, 10 one in 10^10;
# 20 calls in one window is a major incident whatever the baseline says.
# The anomaly score is the half-space-trees score in [0, 1] (detectors.anomaly).
SURGE_HIGH_SCORE = 10.0
SURGE_HIGH_OBSERVED = 20
SURGE_MEDIUM_SCORE = 6.0
ANOMALY_MEDIUM_SCORE = 0.9

#: Key of partner alert ids when none is given: one per process, so every scope of this
#: process agrees on an alert's id; pass :func:`derive_id_key` of the gateway secret so
#: that every gateway (and every restart) agrees too.
_PROCESS_ID_KEY = secrets.token_bytes(32)
_PROCESS_CURSOR_KEY = secrets.token_bytes(32)
_KINDS = frozenset(k.value for k in AlertKind)


class ScopeError(ValueError):
    """A token that verifies but entitles its holder to nothing this gateway knows."""


@dataclass(frozen=True)
class Scope:
    """What one connection may see: built once per connection by :func:`scope_for`.

    ``id_key`` keys the opaque alert ids partners see (default: a key per
    process); give every gateway :func:`derive_id_key` of the gateway secret for
    ids that are stable across reconnects, restarts and gateways; likewise
    ``cursor_key`` (:func:`gateway.cursors.cursor_key`) seals partners' cursors.
    A partner scope has its agreement's ``plan`` and the ``unit_ids`` its token
    may see; its ``k`` is the plan's.
    """

    role: Role
    agency: str
    subject: str
    zones: tuple[Zone, ...]
    k: int = DEFAULT_K
    plan: disclosure.Plan | None = None
    unit_ids: tuple[str, ...] = ()
    id_key: bytes = field(default=_PROCESS_ID_KEY, repr=False, compare=False)
    cursor_key: bytes = field(default=_PROCESS_CURSOR_KEY, repr=False, compare=False)
    _cells: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")
        if self.role in PARTNER_ROLES and self.plan is None:
            raise ValueError(f"a {self.role} scope needs its agreement's plan")
        if self.role in PARTNER_ROLES and len(self.id_key) < 16:
            raise ValueError(f"id_key must be at least 16 bytes for a {self.role} scope, got {len(self.id_key)}")
        object.__setattr__(self, "_cells", frozenset().union(*(z.cells for z in self.zones)))


def scope_for(
    claims: Claims,
    zones_by_id: Mapping[str, Zone],
    now: float,
    k: int = DEFAULT_K,
    *,
    agreements: Mapping[str, Agreement] | None = None,
    plans: Mapping[str, disclosure.Plan] | None = None,
    id_key: bytes | None = None,
    cursor_key: bytes | None = None,
) -> Scope:
    """The scope of a verified token; :class:`ScopeError` when it names nothing this gateway knows.

    Supervisors get every zone (to label alerts and count by zone). Partners get
    their agreement (``agreements``, by the token's ``agreement``), which must be
    for the token's agency and role; a token that names zones narrows it to the
    released units holding them. ``plans`` are the agreements' plans by id
    (built from ``zones_by_id`` when not given). Commanders get the event zones
    their token names that exist and have not ended by ``now``; whether one is
    active is decided per alert by :func:`view`. ``id_key`` and ``cursor_key``
    key partner alert ids and cursors (None: this process's keys; see :class:`Scope`).
    """
    common: dict[str, Any] = {"role": claims.role, "agency": claims.agency, "subject": claims.subject, "k": k}
    if id_key is not None:
        common["id_key"] = id_key
    if cursor_key is not None:
        common["cursor_key"] = cursor_key
    if claims.role is Role.SUPERVISOR:
        return Scope(zones=tuple(sorted(zones_by_id.values(), key=lambda z: z.id)), **common)
    if claims.role in PARTNER_ROLES:
        return _partner_scope(claims, zones_by_id, agreements or {}, plans, common)
    known = [zones_by_id[z] for z in dict.fromkeys(claims.zones) if z in zones_by_id]
    if claims.role is Role.COMMANDER:
        known = [z for z in known if z.kind == "event"]
        if known and all(z.active_until is not None and z.active_until <= now for z in known):
            ended = ", ".join(f"{z.id} (ended {z.active_until:.0f})" for z in known)
            raise ScopeError(f"every event zone of this token has ended: {ended}")
    if not known:
        what = "event zone" if claims.role is Role.COMMANDER else "zone"
        raise ScopeError(f"token names no known {what}: {', '.join(claims.zones) or '(none)'}")
    return Scope(zones=tuple(sorted(known, key=lambda z: z.id)), **common)


def _partner_scope(
    claims: Claims,
    zones_by_id: Mapping[str, Zone],
    agreements: Mapping[str, Agreement],
    plans: Mapping[str, disclosure.Plan] | None,
    common: dict[str, Any],
) -> Scope:
    agreement = agreements.get(claims.agreement or "")
    if agreement is None:
        raise ScopeError(f"token names no data-sharing agreement this gateway has: {claims.agreement or '(none)'}")
    if agreement.agency != claims.agency or agreement.role is not claims.role:
        raise ScopeError(
            f"agreement {agreement.id!r} is for {agreement.agency} ({agreement.role.value}), "
            f"not for this token's {claims.agency} ({claims.role.value})"
        )
    plan = (plans or {}).get(agreement.id) or agreement.plan(zones_by_id)
    wanted = set(claims.zones) & set(agreement.zones) if claims.zones else set(agreement.zones)
    units = [u for u in plan.units if wanted & set(u.zones)]
    if not units:
        raise ScopeError(f"token names no zone of agreement {agreement.id!r}: {', '.join(claims.zones)}")
    zones = tuple(sorted((zones_by_id[z] for u in units for z in u.zones), key=lambda z: z.id))
    return Scope(zones=zones, plan=plan, unit_ids=tuple(u.id for u in units), **{**common, "k": plan.k})


def cursor_for(stream_id: str, scope: Scope) -> str:
    """The id ``scope`` resumes from for this stream id: itself, or sealed for partners (:mod:`gateway.cursors`)."""
    if scope.plan is None:  # not a partner (a partner's scope always has its plan)
        return stream_id
    return cursors.seal(scope.cursor_key, stream_id, scope.plan.agreement)


def stream_id_for(cursor: str, scope: Scope) -> str:
    """The stream id of a client's ``last_id``; :class:`gateway.cursors.CursorError` when a partner's is not one we sealed."""
    if scope.plan is None:  # not a partner
        return cursor
    return cursors.unseal(scope.cursor_key, cursor, scope.plan.agreement)


def derive_id_key(secret: bytes) -> bytes:
    """The key of partner alert ids, derived from the gateway secret (so the token key itself is never reused).

    >>> len(derive_id_key(b"s" * 32))
    32
    """
    return hmac.new(secret, b"watchfloor partner alert ids v1", hashlib.sha256).digest()


def severity(alert: Mapping[str, Any]) -> str:
    """``low``, ``medium`` or ``high``, from the alert's kind and scores (closed alerts keep theirs).

    feed_outage: high (every dashboard is blind). surge: high at score >=
    :data:`SURGE_HIGH_SCORE` or observed >= :data:`SURGE_HIGH_OBSERVED`, medium
    at score >= :data:`SURGE_MEDIUM_SCORE`, else low. zone_surge: high like a
    surge, else medium (the zone's threshold was chosen for it on purpose).
    anomaly: medium at score >= :data:`ANOMALY_MEDIUM_SCORE`, else low.

    >>> severity({"kind": "surge", "score": 6.5, "observed": 9}), severity({"kind": "surge", "score": 3.0, "observed": 25})
    ('medium', 'high')
    >>> severity({"kind": "quake"})
    Traceback (most recent call last):
    ...
    ValueError: unknown alert kind 'quake'; expected one of anomaly, feed_outage, surge, zone_surge
    """
    kind = alert.get("kind")
    score = _number(alert.get("score"))
    if kind == AlertKind.FEED_OUTAGE:
        return "high"
    if kind == AlertKind.SURGE:
        if score >= SURGE_HIGH_SCORE or _number(alert.get("observed")) >= SURGE_HIGH_OBSERVED:
            return "high"
        return "medium" if score >= SURGE_MEDIUM_SCORE else "low"
    if kind == AlertKind.ZONE_SURGE:
        high = score >= SURGE_HIGH_SCORE or _number(alert.get("observed")) >= SURGE_HIGH_OBSERVED
        return "high" if high else "medium"
    if kind == AlertKind.ANOMALY:
        return "medium" if score >= ANOMALY_MEDIUM_SCORE else "low"
    raise ValueError(f"unknown alert kind {kind!r}; expected one of {', '.join(sorted(_KINDS))}")


def severity_rank(name: str) -> int:
    """0, 1, 2 for low, medium, high.

    >>> severity_rank("medium")
    1
    """
    return SEVERITIES.index(name)


def view(alert: Mapping[str, Any], scope: Scope, now: float) -> dict[str, Any] | None:
    """The alert as ``scope`` may see it, or None when it is out of scope.

    ``alert`` is ``Alert.to_json()`` (it is not modified). Partners get a new
    dict built from an allow-list; see the module docstring.
    """
    sev = severity(alert)
    cells = _cells(alert)
    outage = alert.get("kind") == AlertKind.FEED_OUTAGE
    if scope.role is Role.SUPERVISOR:
        out = copy.deepcopy(dict(alert))
        out["severity"] = sev
        out["zones"] = _touched(_active(scope.zones, now, alert), cells)
        return out
    if scope.role is Role.COMMANDER:
        active = _active(scope.zones, now, alert)
        touched = _touched(active, cells)
        if not active or not (outage or touched):
            return None
        out = copy.deepcopy(dict(alert))
        out["severity"] = sev
        out["zones"] = touched
        return out
    assert scope.plan is not None
    if not scope.plan.alerts:  # the agreement does not share alerts: none reaches it, by any path
        return None
    return disclosure.partner_alert_view(
        alert, scope.plan, scope.unit_ids, alert_id=alert_id_for(str(alert.get("id", "")), scope), severity=sev
    )


def alert_id_for(alert_id: str, scope: Scope) -> str:
    """The id ``scope`` knows this alert by (use it for ``action`` frames too).

    Supervisors and commanders see the detector's id; partners a keyed hash of it,
    since detector ids name an anchor cell or an event zone.

    >>> s = Scope(Role.SCHOOL, "MCIU", "desk", (), plan=disclosure.Plan("mciu", ()), id_key=b"k" * 32)
    >>> alert_id_for("surge:882aac941dfffff:1700000000", s)
    'a-7fb733435fa083dd609ce08d'
    """
    if scope.role not in PARTNER_ROLES:
        return alert_id
    return opaque_alert_id(scope.id_key, alert_id)


def opaque_alert_id(id_key: bytes, alert_id: str) -> str:
    """The opaque id partners know ``alert_id`` by under ``id_key`` (:attr:`Scope.id_key`); see :func:`alert_id_for`."""
    return "a-" + hmac.new(id_key, alert_id.encode(), hashlib.sha256).hexdigest()[:24]


def visible_cells(scope: Scope) -> frozenset[str] | None:
    """The res-8 cells this scope may see (None: every cell). Commanders' event zones count whether active or not."""
    if scope.role is Role.SUPERVISOR:
        return None
    return scope._cells


def view_counts(counts: Mapping[str, int], scope: Scope, now: float) -> dict[str, int]:
    """Per-cell counts (res-8 cell -> n) as ``scope`` may see them.

    Supervisors: unchanged. Commanders: the cells of zones active at ``now``.
    Partners: nothing; they read their agreement's released table (:mod:`gateway.disclosure`).
    """
    if scope.role is Role.SUPERVISOR:
        return dict(counts)
    if scope.role is Role.COMMANDER:
        cells = frozenset().union(*(z.cells for z in scope.zones if z.active(now)))
        return {c: n for c, n in counts.items() if c in cells}
    return {}


def zone_counts(counts: Mapping[str, int], scope: Scope, now: float) -> dict[str, int]:
    """Calls per zone (zone id -> n) for the zones of ``scope`` active at ``now``; nothing for partners (see :func:`view_counts`)."""
    if scope.role in PARTNER_ROLES:
        return {}
    return {z.id: sum(counts.get(c, 0) for c in z.cells) for z in scope.zones if z.active(now)}


# ---------------------------------------------------------------------- helpers


def _active(zones: Iterable[Zone], now: float, alert: Mapping[str, Any]) -> list[Zone]:
    """Zones active at ``now``, at the alert's time or when its episode started (so the close of
    an alert that opened during the event reaches the commander even after the event ended)."""
    times = [now] + [t for t in (alert.get("at"), alert.get("started_at")) if isinstance(t, int | float) and not isinstance(t, bool)]
    return [z for z in zones if any(z.active(t) for t in times)]


def _touched(zones: Iterable[Zone], cells: frozenset[str]) -> list[str]:
    return sorted(z.id for z in zones if z.cells & cells)


def _cells(alert: Mapping[str, Any]) -> frozenset[str]:
    cells = alert.get("cells") or ()
    return frozenset(c for c in cells if isinstance(c, str))


def _number(x: object) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return 0.0
    return float(x)
