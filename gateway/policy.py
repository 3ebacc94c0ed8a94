"""What each role may see of an alert or of the live counts (pure: the gateway's privacy core).

Every alert and every count frame passes through :func:`view` /
:func:`view_counts` before it leaves the gateway; nothing a client sends can
widen what these functions return.

==============  ===================================  ==========================================================
role            alerts delivered                     what the alert shows
==============  ===================================  ==========================================================
supervisor      all                                  everything the detector wrote, plus severity and zones
commander       touching an event zone while it is   everything, plus severity and the zones touched
                active (and feed outages then)
transit/school  touching one of its zones, and       an allow-list: cells generalized to res 7 and only inside
                every feed outage                    its zones, counts below k withheld, times to the minute,
                                                     scores to 1 decimal, an opaque id, a reason written here
==============  ===================================  ==========================================================

Counts follow the same rule: supervisors get every res-8 cell, commanders the
cells of their active zones, partners res-7 sums over their zones' cells with
sums below ``k`` left out.

Partners never see the detector's ``reason`` (it names exact cells and small
counts), ``p_value``, ``zone`` (an event zone), or the alert id (surge ids name
their anchor cell, zone-surge ids an event zone): they get a keyed hash of it,
stable for the key given to :func:`scope_for`.

Examples
--------
>>> from gateway.tokens import Claims
>>> from gateway.zones import point_cells
>>> lansdale = Zone("septa-lansdale", "Lansdale station", "station", "SEPTA", point_cells(-75.2838, 40.2418), {})
>>> claims = Claims("ops-desk-3", Role.TRANSIT, "SEPTA", ("septa-lansdale",), 2e9, 1e9, "j1")
>>> scope = scope_for(claims, {lansdale.id: lansdale}, now=1.7e9)
>>> inside, outside = sorted(lansdale.cells)[:2], ["882aac941dfffff"]
>>> alert = {"id": f"surge:{inside[0]}:1699999980", "kind": "surge", "state": "open", "started_at": 1699999980.0,
...          "at": 1700000047.5, "cells": inside + outside, "window_min": 15, "observed": 12, "expected": 3.14159,
...          "score": 7.234, "p_value": 5.8e-8, "categories": {"TRAFFIC": 10, "EMS": 2}, "model": "surge-poisson",
...          "model_version": "1", "reason": f"12 calls (9 incidents) in 15 min in 7 cells around {inside[0]}"}
>>> v = view(alert, scope, now=1700000050.0)
>>> v["severity"], v["zones"], v["at"], v["observed"], v["expected"], v["score"], v["categories"]
('medium', ['septa-lansdale'], 1700000040.0, 12, 3.1, 7.2, {'TRAFFIC': 10})
>>> v["reason"]
'More calls than usual near Lansdale station: 12 in 15 min, 3.1 expected'
>>> all(c == h3.cell_to_parent(inside[0], 7) for c in v["cells"]), inside[0] in str(v)
(True, False)
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

import h3

from detectors.types import AlertKind, AlertState
from gateway.protocol import SEVERITIES
from gateway.tokens import PARTNER_ROLES, Claims, Role
from gateway.zones import ZONE_RESOLUTION, Zone
from streams.schema import Category

#: Counts below this are withheld from partners (small-cell suppression).
DEFAULT_K = 3
#: Resolution partner cells are generalized to (res 7: ~5.2 km^2, seven res-8 cells).
DEFAULT_GENERALIZE_RES = 7

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
_CATEGORIES = frozenset(c.value for c in Category)
_KINDS = frozenset(k.value for k in AlertKind)
_STATES = frozenset(s.value for s in AlertState)


class ScopeError(ValueError):
    """A token that verifies but entitles its holder to nothing this gateway knows."""


@dataclass(frozen=True)
class Scope:
    """What one connection may see: built once per connection by :func:`scope_for`.

    ``id_key`` keys the opaque alert ids partners see (default: a key per
    process); give every gateway :func:`derive_id_key` of the gateway secret for
    ids that are stable across reconnects, restarts and gateways.
    """

    role: Role
    agency: str
    subject: str
    zones: tuple[Zone, ...]
    k: int = DEFAULT_K
    generalize_res: int = DEFAULT_GENERALIZE_RES
    id_key: bytes = field(default=_PROCESS_ID_KEY, repr=False, compare=False)
    _cells: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")
        if not 0 <= self.generalize_res <= ZONE_RESOLUTION:
            raise ValueError(f"generalize_res must be in 0..{ZONE_RESOLUTION}, got {self.generalize_res!r}")
        if self.role in PARTNER_ROLES and len(self.id_key) < 16:
            raise ValueError(f"id_key must be at least 16 bytes for a {self.role} scope, got {len(self.id_key)}")
        object.__setattr__(self, "_cells", frozenset().union(*(z.cells for z in self.zones)))


def scope_for(
    claims: Claims,
    zones_by_id: Mapping[str, Zone],
    now: float,
    k: int = DEFAULT_K,
    *,
    generalize_res: int = DEFAULT_GENERALIZE_RES,
    id_key: bytes | None = None,
) -> Scope:
    """The scope of a verified token; :class:`ScopeError` when it names nothing this gateway knows.

    Supervisors get every zone (to label alerts and count by zone). Partners get
    the zones their token names that exist (unknown ids are ignored). Commanders
    get the event zones their token names that exist and have not ended by
    ``now``; whether one is active is decided per alert by :func:`view`.
    ``id_key`` keys partner alert ids (None: this process's key; see :class:`Scope`).
    """
    common = {"role": claims.role, "agency": claims.agency, "subject": claims.subject, "k": k, "generalize_res": generalize_res}
    if id_key is not None:
        common["id_key"] = id_key
    if claims.role is Role.SUPERVISOR:
        return Scope(zones=tuple(sorted(zones_by_id.values(), key=lambda z: z.id)), **common)
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


def derive_id_key(secret: bytes) -> bytes:
    """The key of partner alert ids, derived from the gateway secret (so the token key itself is never reused).

    >>> len(derive_id_key(b"s" * 32))
    32
    """
    return hmac.new(secret, b"watchfloor partner alert ids v1", hashlib.sha256).digest()


def severity(alert: Mapping) -> str:
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


def view(alert: Mapping, scope: Scope, now: float) -> dict | None:
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
    return _partner_view(alert, scope, sev, cells, outage)


def alert_id_for(alert_id: str, scope: Scope) -> str:
    """The id ``scope`` knows this alert by (use it for ``action`` frames too).

    Supervisors and commanders see the detector's id; partners a keyed hash of it,
    since detector ids name an anchor cell or an event zone.

    >>> s = Scope(Role.SCHOOL, "MCIU", "desk", (), id_key=b"k" * 32)
    >>> alert_id_for("surge:882aac941dfffff:1700000000", s)
    'a-7fb733435fa083dd609ce08d'
    """
    if scope.role not in PARTNER_ROLES:
        return alert_id
    return "a-" + hmac.new(scope.id_key, alert_id.encode(), hashlib.sha256).hexdigest()[:24]


def visible_cells(scope: Scope) -> frozenset[str] | None:
    """The res-8 cells this scope may see (None: every cell). Commanders' event zones count whether active or not."""
    if scope.role is Role.SUPERVISOR:
        return None
    return scope._cells


def view_counts(counts: Mapping[str, int], scope: Scope, now: float) -> dict[str, int]:
    """Per-cell counts (res-8 cell -> n) as ``scope`` may see them.

    Supervisors: unchanged. Commanders: the cells of zones active at ``now``.
    Partners: sums per res-``generalize_res`` parent over their zones' cells only,
    sums below ``k`` left out.

    >>> s = Scope(Role.TRANSIT, "SEPTA", "desk", (Zone("z", "Z", "station", "SEPTA", frozenset({"882aac9599fffff"}), {}),))
    >>> view_counts({"882aac9599fffff": 4, "882aac941dfffff": 9}, s, now=0.0)
    {'872aac959ffffff': 4}
    >>> view_counts({"882aac9599fffff": 2}, s, now=0.0)
    {}
    """
    if scope.role is Role.SUPERVISOR:
        return dict(counts)
    if scope.role is Role.COMMANDER:
        cells = frozenset().union(*(z.cells for z in scope.zones if z.active(now)))
        return {c: n for c, n in counts.items() if c in cells}
    sums: dict[str, int] = {}
    for c, n in counts.items():
        if c in scope._cells:
            parent = h3.cell_to_parent(c, scope.generalize_res)
            sums[parent] = sums.get(parent, 0) + n
    return {c: n for c, n in sorted(sums.items()) if n >= scope.k}


def zone_counts(counts: Mapping[str, int], scope: Scope, now: float) -> dict[str, int]:
    """Calls per zone (zone id -> n) for the zones of ``scope`` active at ``now``; partners lose sums below ``k``."""
    out: dict[str, int] = {}
    for z in scope.zones:
        if z.active(now):
            n = sum(counts.get(c, 0) for c in z.cells)
            if scope.role not in PARTNER_ROLES or n >= scope.k:
                out[z.id] = n
    return out


# ---------------------------------------------------------------------- partners


def _partner_view(alert: Mapping, scope: Scope, sev: str, cells: frozenset[str], outage: bool) -> dict | None:
    kind = alert.get("kind")
    if kind not in _KINDS:
        return None  # an allow-list: a kind this module does not know is not shown to partners
    inside = frozenset() if outage else cells & scope._cells
    touched = [z for z in scope.zones if z.cells & inside]
    if not outage and not touched:
        return None
    k = scope.k
    observed = alert.get("observed")
    shown = int(observed) if _is_count(observed) and observed >= k else None
    raw_categories = alert.get("categories") or {}
    categories = {str(c): int(n) for c, n in raw_categories.items() if c in _CATEGORIES and _is_count(n) and n >= k}
    window_min = int(_number(alert.get("window_min")))
    expected = round(_number(alert.get("expected")), 1)
    state = alert.get("state")
    if state not in _STATES:
        return None
    return {
        "id": alert_id_for(str(alert.get("id", "")), scope),
        "kind": str(kind),
        "state": str(state),
        "severity": sev,
        "started_at": _minute(alert.get("started_at")),
        "at": _minute(alert.get("at")),
        "window_min": window_min,
        "zones": sorted(z.id for z in touched),
        "cells": sorted({h3.cell_to_parent(c, scope.generalize_res) for c in inside}),
        "observed": shown,
        "expected": expected,
        "categories": categories,
        "score": round(_number(alert.get("score")), 1),
        "model": str(alert.get("model", "")),
        "model_version": str(alert.get("model_version", "")),
        "reason": _reason(str(kind), state, [z.name for z in sorted(touched, key=lambda z: z.id)], shown, window_min, expected, k),
    }


def _reason(kind: str, state: str, places: list[str], observed: int | None, window_min: int, expected: float, k: int) -> str:
    """One sentence from the allowed fields only (never the detector's reason)."""
    closed = state == AlertState.CLOSED
    if kind == AlertKind.FEED_OUTAGE:
        if closed:
            return f"The 911 call feed is back after about {window_min} min of silence; alerts for that time may arrive late"
        return (
            f"The 911 call feed has been silent for about {window_min} min while {expected:.1f} calls were expected; alerts may be missing"
        )
    what = "Unusual calls" if kind == AlertKind.ANOMALY else "More calls than usual"
    where = f" near {_join(places)}" if places else ""
    count = str(observed) if observed is not None else f"fewer than {k}"
    if closed:
        return f"Ended: {what.lower()}{where} ({count} in the last {window_min} min, {expected:.1f} expected)"
    return f"{what}{where}: {count} in {window_min} min, {expected:.1f} expected"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


# ---------------------------------------------------------------------- helpers


def _active(zones: Iterable[Zone], now: float, alert: Mapping) -> list[Zone]:
    """Zones active at ``now``, at the alert's time or when its episode started (so the close of
    an alert that opened during the event reaches the commander even after the event ended)."""
    times = [now] + [t for t in (alert.get("at"), alert.get("started_at")) if isinstance(t, int | float) and not isinstance(t, bool)]
    return [z for z in zones if any(z.active(t) for t in times)]


def _touched(zones: Iterable[Zone], cells: frozenset[str]) -> list[str]:
    return sorted(z.id for z in zones if z.cells & cells)


def _cells(alert: Mapping) -> frozenset[str]:
    cells = alert.get("cells") or ()
    return frozenset(c for c in cells if isinstance(c, str))


def _minute(t: object) -> float:
    return math.floor(_number(t) / 60.0) * 60.0


def _number(x: object) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        return 0.0
    return float(x)


def _is_count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
