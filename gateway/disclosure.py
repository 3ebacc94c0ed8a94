"""Disclosure control for partners (pure): the one path by which a number reaches a transit or school partner.

A partner (transit, school) may learn how busy its own places are and that
something unusual is happening near them, never a count small enough to point
at a caller. Every number a partner can obtain (the ``counts`` frame, hot
spots, history, zone totals, the figures in an alert) is a value of its
*released table* (:class:`ReleasedWindow`), built here by one rule, or a
function of those values alone (its forecast: :mod:`gateway.partnerforecast`);
alert views (:func:`partner_alert_view`) carry no detector statistic at all.

The released table
------------------
=============  ==========================================================================
geography      the partner's *units*: its zones, with zones that share a cell merged
               (:func:`units_for`). Units are disjoint; no cell or sub-zone area is named.
time           aligned windows of the agreement's ``window_min`` (one size, e.g. 60 min),
               released once the window has closed and frozen from then on
               (:func:`closed_windows`): never a rolling window, never a window in progress
categories     the agreement's category groups, a partition of the categories; or the
               total only (the default)
rule           a value is shown when it is at least ``k``; otherwise it is ``None``
               ("fewer than k", which covers 0 too)
=============  ==========================================================================

Why this rule cannot be differenced
-----------------------------------
Each call falls in exactly one released value (one unit, one window, one
group): the released values are sums over *disjoint* sets of calls, and no
total over them (a zone total, a day, a category total, a res-7 cell) is
released anywhere. So no linear combination of released values contains a
withheld value, and a withheld value is only known to lie in ``0..k-1``
(``k`` possibilities), whatever a partner combines. The decision to withhold
depends on that value alone, so withholding leaks nothing else. Coarser views
(a day, all units) are sums the dashboard makes, shown as ranges when a part
is withheld. ``tests/gateway/test_attacker.py`` plays the attacker: it
collects every answer of a day and solves for the withheld values.

Alerts for partners name the units they touch and whether they are
jurisdiction-wide; they carry the kind, state, severity, times to the minute
and the names of categories with at least ``k`` calls (no counts, no
expected value, no score, no cells, no detector text), and are shown only
when the alert's own count is at least ``k``. See ``docs/privacy.md``.

Examples
--------
>>> from gateway.zones import Zone
>>> a = Zone("a", "Station A", "station", "T", frozenset({"882aac9599fffff", "882aac959dfffff"}), {})
>>> b = Zone("b", "Station B", "station", "T", frozenset({"882aac959dfffff", "882aac9591fffff"}), {})
>>> c = Zone("c", "Station C", "station", "T", frozenset({"882aac941dfffff"}), {})
>>> [(u.id, u.name) for u in units_for([a, b, c])]
[('a+b', 'Station A and Station B'), ('c', 'Station C')]
>>> plan = Plan("t", units_for([a, b, c]), window_min=60, k=3)
>>> w = release_window(plan, 3600.0, {("882aac9599fffff", "EMS"): 2, ("882aac9591fffff", "FIRE"): 2, ("882aac941dfffff", "EMS"): 1})
>>> w.values
{'a+b': {'all': 4}, 'c': {'all': None}}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from detectors.types import AlertKind, AlertState
from gateway.zones import Zone
from streams.ingest.schema import CATEGORIES

#: The group every call falls in when an agreement releases totals only.
ALL_GROUP = "all"
#: Window sizes an agreement may choose (minutes): each divides a day, so windows align on days.
WINDOW_CHOICES = (15, 30, 60, 120, 180, 240, 360, 720, 1440)
_KINDS = frozenset(k.value for k in AlertKind)
_STATES = frozenset(s.value for s in AlertState)


class DisclosureError(ValueError):
    """A plan or a released table that breaks the disclosure rule (a configuration error)."""


@dataclass(frozen=True)
class Unit:
    """A released area: one zone, or zones that overlap merged; its cells are the union of theirs."""

    id: str
    name: str
    zones: tuple[str, ...]
    cells: frozenset[str] = field(repr=False)


def units_for(zones: Iterable[Zone]) -> tuple[Unit, ...]:
    """The partner's units: its zones, with every group of zones linked by shared cells merged into one.

    Overlapping zones released apart would give a partner two totals whose
    difference is the calls in the part of one outside the other: an area it
    was never granted, with counts below k. Merged, the units are disjoint.
    Sorted by id; a merged unit's id joins its zone ids with ``+``.
    """
    zs = sorted({z.id: z for z in zones}.values(), key=lambda z: z.id)
    groups: list[list[Zone]] = []
    for z in zs:
        touching = [g for g in groups if any(z.cells & o.cells for o in g)]
        merged = [z] + [o for g in touching for o in g]
        groups = [g for g in groups if not any(g is t for t in touching)] + [sorted(merged, key=lambda o: o.id)]
    units = []
    for g in groups:
        names = [o.name for o in g]
        name = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        units.append(Unit("+".join(o.id for o in g), name, tuple(o.id for o in g), frozenset().union(*(o.cells for o in g))))
    return tuple(sorted(units, key=lambda u: u.id))


@dataclass(frozen=True)
class Plan:
    """What one data-sharing agreement releases: units, one window size, category groups, k, how far back.

    ``groups`` maps a group name to its categories and must partition
    :data:`CATEGORIES` (every category in exactly one group), so that no group
    total is a sum of others; empty means totals only (one group, ``all``).
    Windows start at multiples of ``window_min`` after ``offset_min`` past
    midnight UTC (e.g. ``offset_min=300`` starts days at 05:00 UTC, midnight
    in US Eastern standard time).

    >>> Plan("x", (), window_min=45, k=3)
    Traceback (most recent call last):
    ...
    gateway.disclosure.DisclosureError: agreement 'x': window_min must be one of 15, 30, 60, 120, 180, 240, 360, 720, 1440, got 45
    >>> Plan("x", (), window_min=60, k=3, groups={"Medical": ("EMS",), "Other": ("FIRE",)})
    Traceback (most recent call last):
    ...
    gateway.disclosure.DisclosureError: agreement 'x': category groups must cover every category once; missing OTHER, POLICE, TRAFFIC
    """

    agreement: str
    units: tuple[Unit, ...]
    window_min: int = 60
    k: int = 3
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    offset_min: int = 0
    history_h: int = 168
    #: whether the agreement shares its alerts (``shares`` lists ``alerts``): without, no alert view at all
    alerts: bool = True

    def __post_init__(self) -> None:
        where = f"agreement {self.agreement!r}"
        if self.window_min not in WINDOW_CHOICES:
            raise DisclosureError(f"{where}: window_min must be one of {', '.join(map(str, WINDOW_CHOICES))}, got {self.window_min}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 2:
            raise DisclosureError(f"{where}: k must be an integer >= 2 (k = 1 would show single calls), got {self.k!r}")
        if not 0 <= self.offset_min < 1440:
            raise DisclosureError(f"{where}: offset_min must be in 0..1439, got {self.offset_min}")
        if not 1 <= self.history_h <= 24 * 31:
            raise DisclosureError(f"{where}: history_h must be 1..744 hours, got {self.history_h}")
        if self.groups:
            seen: list[str] = [c for cats in self.groups.values() for c in cats]
            unknown = sorted(set(seen) - set(CATEGORIES))
            missing = sorted(set(CATEGORIES) - set(seen))
            twice = sorted({c for c in seen if seen.count(c) > 1})
            if unknown or missing or twice:
                what = "; ".join(
                    p for p in (f"unknown {', '.join(unknown)}" if unknown else "", f"missing {', '.join(missing)}" if missing else "",
                                f"in two groups {', '.join(twice)}" if twice else "") if p
                )  # fmt: skip
                raise DisclosureError(f"{where}: category groups must cover every category once; {what}")
        cells = [c for u in self.units for c in u.cells]
        if len(cells) != len(set(cells)):
            raise DisclosureError(f"{where}: units overlap; build them with units_for")

    @property
    def group_of(self) -> dict[str, str]:
        """Category -> the group it is released in."""
        if not self.groups:
            return {c: ALL_GROUP for c in CATEGORIES}
        return {c: g for g, cats in self.groups.items() for c in cats}

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(self.groups) if self.groups else (ALL_GROUP,)

    @property
    def cells(self) -> frozenset[str]:
        return frozenset().union(*(u.cells for u in self.units)) if self.units else frozenset()

    def window_start(self, t: float) -> float:
        """Start (epoch s) of the window holding event time ``t``.

        >>> Plan("x", (), window_min=60, offset_min=300).window_start(1_700_000_000.0)
        1699999200.0
        """
        size, off = self.window_min * 60, self.offset_min * 60
        return float(math.floor((t - off) / size) * size + off)


def closed_windows(plan: Plan, watermark: float, *, settle_s: float, horizon: float | None = None) -> list[float]:
    """Starts of the windows a partner may read at ``watermark`` (the newest counted event time), oldest first.

    A window is released once the worker's event time has passed its end by
    ``settle_s`` (calls arriving late are counted by then), and from then on is
    frozen: a window that changed after it was shown would tell, by its
    difference, the calls that arrived in between. Only the last
    ``history_h`` hours, and no window before ``horizon`` (the oldest counts
    still kept), are listed.

    >>> p = Plan("x", (), window_min=60, history_h=3)
    >>> closed_windows(p, 4 * 3600 + 60.0, settle_s=120)
    [0.0, 3600.0, 7200.0]
    >>> closed_windows(p, 4 * 3600 + 180.0, settle_s=120)
    [3600.0, 7200.0, 10800.0]
    """
    size = plan.window_min * 60.0
    last_end = plan.window_start(watermark - settle_s)  # the end of the newest window settled by now
    first = max(oldest_listed(plan, watermark, settle_s=settle_s), -math.inf if horizon is None else plan.window_start(horizon) + size)
    starts = []
    s = last_end - size
    while s >= first:
        starts.append(s)
        s -= size
    return starts[::-1]


def oldest_listed(plan: Plan, watermark: float, *, settle_s: float, hours: float | None = None) -> float:
    """The start of the oldest window :func:`closed_windows` can list at ``watermark``: ``history_h`` hours (or
    the last ``hours``) before the end of the newest settled window (not before the watermark: within
    ``settle_s`` of a window's end the history reaches one window further back).

    >>> p = Plan("x", (), window_min=60, history_h=3)
    >>> oldest_listed(p, 4 * 3600 + 60.0, settle_s=120), oldest_listed(p, 4 * 3600 + 180.0, settle_s=120)
    (0.0, 3600.0)
    >>> oldest_listed(p, 4 * 3600 + 60.0, settle_s=120, hours=1)  # the newest settled window alone
    7200.0
    """
    return plan.window_start(watermark - settle_s) - (plan.history_h if hours is None else hours) * 3600.0


@dataclass(frozen=True)
class ReleasedWindow:
    """One window of an agreement's released table: unit id -> group -> calls (``None``: fewer than k)."""

    start: float
    minutes: int
    values: dict[str, dict[str, int | None]]

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "minutes": self.minutes, "values": self.values}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReleasedWindow:
        return cls(float(data["start"]), int(data["minutes"]), {u: dict(g) for u, g in data["values"].items()})

    def for_units(self, unit_ids: Iterable[str]) -> ReleasedWindow:
        """The same window with only these units (a token may name fewer zones than its agreement)."""
        keep = set(unit_ids)
        return ReleasedWindow(self.start, self.minutes, {u: g for u, g in self.values.items() if u in keep})

    def total(self, unit: str) -> tuple[int, int | None]:
        """The unit's calls over every group as a range ``(at least, at most)``; at most is None when unknown.

        >>> w = ReleasedWindow(0.0, 60, {"a": {"x": 5, "y": None}})
        >>> w.total("a")
        (5, None)
        """
        vals = self.values.get(unit, {}).values()
        shown = sum(v for v in vals if v is not None)
        return (shown, shown if all(v is not None for v in vals) else None)


def release_window(plan: Plan, start: float, counts: Mapping[tuple[str, str], int]) -> ReleasedWindow:
    """The released values of the window starting at ``start`` from exact calls per (res-8 cell, category) in it.

    Each call is counted in exactly one value (its unit and its category's
    group); a value below ``plan.k`` becomes ``None``. Cells outside the
    plan's units are ignored.
    """
    unit_of = {c: u.id for u in plan.units for c in u.cells}
    group_of = plan.group_of
    sums: dict[str, dict[str, int]] = {u.id: dict.fromkeys(plan.group_names, 0) for u in plan.units}
    for (cell, cat), n in counts.items():
        unit = unit_of.get(cell)
        group = group_of.get(cat)
        if unit is None or group is None or n <= 0:
            continue
        sums[unit][group] += int(n)
    values = {u: {g: (n if n >= plan.k else None) for g, n in gs.items()} for u, gs in sums.items()}
    return ReleasedWindow(float(start), plan.window_min, values)


def check_released(plan: Plan, window: ReleasedWindow) -> None:
    """Raise :class:`DisclosureError` unless ``window`` obeys the rule (the gateway checks stored windows before use).

    >>> p = Plan("x", (Unit("u", "U", ("u",), frozenset({"882aac9599fffff"})),), window_min=60, k=3)
    >>> check_released(p, ReleasedWindow(0.0, 60, {"u": {"all": 2}}))
    Traceback (most recent call last):
    ...
    gateway.disclosure.DisclosureError: released window 0 of agreement 'x': u/all is 2, below k = 3
    """
    where = f"released window {window.start:.0f} of agreement {plan.agreement!r}"
    if window.minutes != plan.window_min or plan.window_start(window.start) != window.start:
        raise DisclosureError(f"{where}: not a {plan.window_min}-min window of the agreement")
    units = {u.id for u in plan.units}
    for u, groups in window.values.items():
        if u not in units or set(groups) != set(plan.group_names):
            raise DisclosureError(f"{where}: unit {u!r} or its groups are not the agreement's")
        for g, n in groups.items():
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < plan.k):
                raise DisclosureError(f"{where}: {u}/{g} is {n!r}, below k = {plan.k}")


def hot_units(window: ReleasedWindow | None, units: Sequence[Unit]) -> list[dict[str, Any]]:
    """The units of ``window`` busiest first (withheld last), as hot-spot rows: the partner's hot spots."""
    if window is None:
        return []
    rows = []
    for u in units:
        low, high = window.total(u.id)
        rows.append(
            {"unit": u.id, "name": u.name, "zones": list(u.zones), "calls": window.values.get(u.id, {}), "at_least": low, "exact": high}
        )
    return sorted(rows, key=lambda r: (r["exact"] is None and r["at_least"] == 0, -r["at_least"], r["unit"]))


# ---------------------------------------------------------------------- alerts


def extent(alert: Mapping[str, Any]) -> str:
    """``jurisdiction`` for alerts about the whole jurisdiction (its surge test, the call-mix anomaly, a feed
    outage), else ``area``.

    >>> extent({"id": "surge:jurisdiction:1700000000", "kind": "surge"}), extent({"id": "surge:882aac9599fffff:1", "kind": "surge"})
    ('jurisdiction', 'area')
    """
    kind = alert.get("kind")
    if kind in (AlertKind.FEED_OUTAGE, AlertKind.ANOMALY):
        return "jurisdiction"
    parts = str(alert.get("id", "")).split(":")
    return "jurisdiction" if len(parts) > 1 and parts[1] == "jurisdiction" else "area"


def partner_alert_view(
    alert: Mapping[str, Any], plan: Plan, unit_ids: Iterable[str], *, alert_id: str, severity: str
) -> dict[str, Any] | None:
    """The alert as a partner with ``plan`` (seeing the units ``unit_ids``) may see it, or None.

    Shown when it is a feed outage, or when it touches one of the units and
    its own count is at least ``k`` (an alert on fewer calls would say that
    a call or two happened near the partner's place). The view names the
    units touched and the extent; it carries no count, expected value, score,
    p-value, cell, detector model or detector text, so nothing in it inverts
    to a withheld value. ``alert_id`` is the partner's opaque id for it.
    """
    kind = alert.get("kind")
    state = alert.get("state")
    if kind not in _KINDS or state not in _STATES:
        return None  # an allow-list: what this module does not know is not shown
    outage = kind == AlertKind.FEED_OUTAGE
    cells = alert.get("cells") or ()
    cells = frozenset(c for c in cells if isinstance(c, str))
    visible = set(unit_ids)
    touched = [u for u in plan.units if u.id in visible and u.cells & cells]
    observed = alert.get("observed")
    big_enough = isinstance(observed, int) and not isinstance(observed, bool) and observed >= plan.k
    if not outage and (not touched or not big_enough):
        return None
    raw = alert.get("categories") or {}
    categories = sorted(c for c, n in raw.items() if c in CATEGORIES and isinstance(n, int) and not isinstance(n, bool) and n >= plan.k)
    where = extent(alert)
    return {
        "id": alert_id,
        "kind": str(kind),
        # open or closed: an "update" tells a partner only that the detector looked again, i.e. that calls came in
        "state": "closed" if state == AlertState.CLOSED else "open",
        "severity": severity,
        "extent": where,
        "started_at": minute(alert.get("started_at")) or 0.0,
        "at": minute(alert.get("at")) or 0.0,
        "units": [u.id for u in touched],
        "zones": sorted(z for u in touched for z in u.zones),
        "categories": categories,
        "reason": partner_reason(str(kind), str(state), where, [u.name for u in touched], categories),
    }


def partner_reason(kind: str, state: str, where: str, places: list[str], categories: list[str]) -> str:
    """One sentence from the shown fields only (never the detector's reason).

    >>> partner_reason("surge", "open", "jurisdiction", ["Norristown Transportation Center"], ["TRAFFIC"])
    'More calls than usual across the whole jurisdiction (mostly TRAFFIC), including near Norristown Transportation Center'
    >>> partner_reason("surge", "closed", "area", ["Lansdale station"], [])
    'Ended: more calls than usual in an area that includes Lansdale station'
    """
    if kind == AlertKind.FEED_OUTAGE:
        if state == AlertState.CLOSED:
            return "The 911 call feed is back after a silence; alerts for that time may arrive late"
        return "The 911 call feed has gone silent; alerts may be missing until it is back"
    what = "unusual calls" if kind == AlertKind.ANOMALY else "more calls than usual"
    mix = f" (mostly {' and '.join(categories)})" if categories and len(categories) <= 2 else ""
    near = " and ".join([", ".join(places[:-1]), places[-1]] if len(places) > 1 else places)
    if where == "jurisdiction":
        text = f"{what} across the whole jurisdiction{mix}" + (f", including near {near}" if near else "")
    else:
        text = f"{what}{mix} in an area that includes {near}" if near else f"{what}{mix}"
    return f"Ended: {text}" if state == AlertState.CLOSED else text[0].upper() + text[1:]


def minute(t: object) -> float | None:
    """An epoch time floored to the minute (None when it is not a finite number): how partners are told times.

    >>> minute(1700000047.5), minute("soon")
    (1700000040.0, None)
    """
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        return None
    return math.floor(float(t) / 60.0) * 60.0
