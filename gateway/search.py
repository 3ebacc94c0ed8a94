"""The filters of ``GET /api/alerts``: searching the alerts of the night, matched on the caller's view (pure: no I/O).

:func:`parse` turns the query string into a :class:`Search` (a 400
:class:`~gateway.http.HttpError` naming the parameter otherwise); the handler
builds each alert's view with :func:`gateway.policy.view`, adds the status
the caller is shown, and keeps it when :meth:`Search.matches` accepts it.

Every filter is evaluated on that view, never on the detector's record: the
view is all the caller may know of an alert, so a filter on anything else
would be an oracle. A partner asking for a category its views withhold
(fewer than k calls), for words of the detector's reason (which it is never
shown) or for a time to the second (it is shown times to the minute) gets
exactly what it gets for a value that matches nothing. For the same reason
partners cannot filter by ``area``: they are never told area names
(``docs/privacy.md``), so for them it is an unknown parameter.

============  ===============================================================================
parameter     an alert matches when (on its view)
============  ===============================================================================
state         ``open`` (default): neither closed nor resolved; ``closed``: closed by the
              detector or resolved by a supervisor; ``all``
kind          its kind is this one
min_severity  its severity is at least this one (``low``, ``medium``, ``high``)
since, until  epoch seconds: its span overlaps ``[since, until]`` (``started_at <= until``
              and ``at >= since``); either may be left out
category      one of :data:`~streams.ingest.schema.CATEGORIES` is among its categories
area          supervisors and commanders: one of its ``areas`` is this name (case ignored)
q             up to :data:`MAX_QUERY` characters, case ignored, found in what the view shows
              (:func:`searchable`)
============  ===============================================================================

Examples
--------
>>> s = parse({"state": ["closed"], "category": ["EMS"], "q": ["Borough"]}, precise=True)
>>> v = {"kind": "surge", "state": "closed", "severity": "medium", "started_at": 60.0, "at": 120.0,
...      "categories": {"EMS": 8}, "areas": ["Lansdale Borough"], "summary": "EMS calls in Lansdale Borough", "reason": "8 calls"}
>>> s.matches(v, searchable(v, None))
True
>>> s.matches({**v, "categories": {"FIRE": 8}}, searchable(v, None))
False
>>> parse({"since": ["200"], "until": ["100"]}, precise=True)
Traceback (most recent call last):
...
gateway.http.HttpError: since (200) is after until (100)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.http import HttpError, epoch, one, only
from gateway.policy import Scope, severity_rank
from gateway.protocol import SEVERITIES
from gateway.tokens import PARTNER_ROLES
from streams.ingest.schema import CATEGORIES

#: longest ``q`` (characters)
MAX_QUERY = 100
STATES = ("open", "closed", "all")
#: the parameters of ``/api/alerts`` for every role; supervisors and commanders also ``area``
PARAMETERS = frozenset({"state", "kind", "min_severity", "limit", "since", "until", "category", "q"})


@dataclass(frozen=True)
class Search:
    """What the caller asked for; ``None`` means no restriction (``area`` and ``text`` are casefolded)."""

    state: str = "open"
    kind: str | None = None
    min_severity: str = "low"
    since: float | None = None
    until: float | None = None
    category: str | None = None
    area: str | None = None
    text: str | None = None

    def matches(self, v: Mapping[str, Any], texts: list[str]) -> bool:
        """Whether the view ``v`` (with the ``status`` the caller is shown, if any) matches; ``texts`` is :func:`searchable` of it.

        >>> v = {"kind": "surge", "state": "open", "severity": "low", "started_at": 60.0, "at": 120.0, "status": {"action": "resolve"}}
        >>> Search("open").matches(v, []), Search("closed").matches(v, []), Search("all", since=121.0).matches(v, [])
        (False, True, False)
        """
        ended = v.get("state") == "closed" or (v.get("status") or {}).get("action") == "resolve"
        if (self.state == "open" and ended) or (self.state == "closed" and not ended):
            return False
        if self.kind is not None and v.get("kind") != self.kind:
            return False
        if severity_rank(str(v.get("severity", "low"))) < severity_rank(self.min_severity):
            return False
        if (self.since is not None or self.until is not None) and not self._overlaps(v):
            return False
        if self.category is not None and self.category not in (v.get("categories") or ()):  # a dict (precise) or a list (partners)
            return False
        if self.area is not None and not any(isinstance(a, str) and a.casefold() == self.area for a in v.get("areas") or ()):
            return False
        return self.text is None or any(self.text in t.casefold() for t in texts)

    def _overlaps(self, v: Mapping[str, Any]) -> bool:
        end = _time(v.get("at"))
        start = _time(v.get("started_at"))
        if end is None:
            return False  # a record without a time is in no range
        start = end if start is None else start
        return (self.until is None or start <= self.until) and (self.since is None or end >= self.since)


def parse(query: dict[str, list[str]], *, precise: bool) -> Search:
    """The search a query string asks for; ``precise`` for supervisors and commanders (who may also give ``area``).

    Codes: ``unknown_parameter`` (from :func:`gateway.http.only`; ``area`` for partners too), ``bad_state``,
    ``bad_severity``, ``bad_since`` / ``bad_until`` (not finite epoch seconds), ``bad_range`` (since after until),
    ``bad_category``, ``bad_area`` (empty), ``bad_query`` (longer than :data:`MAX_QUERY`), and ``bad_<name>``
    for a parameter given twice.

    >>> parse({"area": ["Lansdale Borough"]}, precise=False)
    Traceback (most recent call last):
    ...
    gateway.http.HttpError: unknown parameter 'area'; allowed: category, kind, limit, min_severity, q, since, state, until
    >>> parse({"category": ["ems"]}, precise=True)
    Traceback (most recent call last):
    ...
    gateway.http.HttpError: category must be one of EMS, FIRE, TRAFFIC, POLICE, OTHER, got 'ems'
    """
    only(query, set(PARAMETERS | ({"area"} if precise else set())))
    state = one(query, "state") or "open"
    if state not in STATES:
        raise HttpError(400, "bad_state", f"state must be one of {', '.join(STATES)}, got {state[:40]!r}")
    min_sev = one(query, "min_severity") or "low"
    if min_sev not in SEVERITIES:
        raise HttpError(400, "bad_severity", f"min_severity must be one of {', '.join(SEVERITIES)}, got {min_sev[:40]!r}")
    since, until = _finite(query, "since"), _finite(query, "until")
    if since is not None and until is not None and since > until:
        raise HttpError(400, "bad_range", f"since ({since:g}) is after until ({until:g})")
    category = one(query, "category")
    if category is not None and category not in CATEGORIES:
        raise HttpError(400, "bad_category", f"category must be one of {', '.join(CATEGORIES)}, got {category[:40]!r}")
    area = one(query, "area")
    if area is not None and not area.strip():
        raise HttpError(400, "bad_area", "area is empty; name an area (as /api/places names it) or leave it out")
    text = one(query, "q")
    if text is not None and len(text) > MAX_QUERY:
        raise HttpError(400, "bad_query", f"q must be at most {MAX_QUERY} characters, got {len(text)}")
    return Search(
        state=state,
        kind=one(query, "kind"),
        min_severity=min_sev,
        since=since,
        until=until,
        category=category,
        area=None if area is None else area.strip().casefold(),
        text=text.casefold() if text else None,  # an empty q restricts nothing
    )


def searchable(v: Mapping[str, Any], scope: Scope | None) -> list[str]:
    """The texts of the view ``v`` that ``q`` searches: only what the caller is shown.

    Supervisors and commanders (``scope`` None or not a partner's): the plain ``summary``, the detector's
    ``reason`` and the ``areas`` names. Partners: the ``reason`` of their view (written from the shown
    fields only) and the names of their own units and zones it names, which they read in ``/api/me`` and
    ``/api/zones`` anyway.

    >>> searchable({"summary": "EMS calls in Hollywood", "reason": "9 calls", "areas": ["Hollywood"], "note": "x"}, None)
    ['EMS calls in Hollywood', '9 calls', 'Hollywood']
    """
    if scope is None or scope.role not in PARTNER_ROLES:
        texts = [v.get("summary"), v.get("reason"), *(v.get("areas") or ())]
        return [t for t in texts if isinstance(t, str) and t]
    assert scope.plan is not None  # a partner's scope always has its plan
    units, zones = set(v.get("units") or ()), set(v.get("zones") or ())
    names = [u.name for u in scope.plan.units if u.id in units] + [z.name for z in scope.zones if z.id in zones]
    return [t for t in (v.get("reason"), *names) if isinstance(t, str) and t]


def _finite(query: dict[str, list[str]], name: str) -> float | None:
    value = epoch(query, name)
    if value is not None and not math.isfinite(value):
        raise HttpError(400, f"bad_{name}", f"{name} must be finite epoch seconds, got {value}")
    return value


def _time(t: object) -> float | None:
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        return None
    return float(t)
