"""One alert's story as a role may see it: its lifecycle records and the actions on it, oldest first (pure).

``GET /api/alerts/{id}/records`` (:mod:`gateway.api`) reads the stream entries of one alert (the hub keeps
their stream ids: :meth:`gateway.hub.Hub.record_ids`) and passes them through :func:`alert_records`:

==============  ==========================================================================================
role            what each entry becomes
==============  ==========================================================================================
supervisor,     every record as :func:`gateway.policy.view` gives it (as ``/api/alerts`` does, without the
commander       status: the actions are entries of their own); every action with who (``by``, ``role``,
                ``agency``) and the note
transit/school  the records' generalized views, **consecutive identical views collapsed into one**, and
                each action as ``{action, at}``, the time floored to the minute (no who, no note)
==============  ==========================================================================================

Why partners' identical views are collapsed: a partner's view withholds the counts, so an update that
changes nothing it shows tells it only that the detector looked again, that is that calls came in near its
place. The live feed does not send such an update (:meth:`gateway.hub.Hub._frame_for`); the alert's page
must not list it either, or the number of records would count what the view withholds. A view counts as
identical when every field is (its ``at`` is floored to the minute, so updates within one minute collapse;
updates in different minutes were each sent live and stay separate). An action between two identical
views does not separate them: it changes the status, which is not part of a record's view.

An entry whose view is None (a record from before a commander's zone was active, a partner's record from
before the alert reached k calls) is left out, and so is an action on the alert as it was then.

Examples
--------
>>> from gateway.disclosure import Plan
>>> from gateway.tokens import Role
>>> outage = {"id": "feed_outage:1", "kind": "feed_outage", "state": "open", "started_at": 1700000000.0,
...           "at": 1700000005.0, "cells": [], "observed": 0, "categories": {}}
>>> ack = {"alert_id": "feed_outage:1", "action": "ack", "by": "sup-anna", "role": "supervisor",
...        "agency": "Montgomery County 911", "note": "CAD vendor called", "at": 1700000020.5, "alert": outage}
>>> updated = {**outage, "state": "update", "at": 1700000031.0}
>>> closed = {**outage, "state": "closed", "at": 1700000400.0}
>>> entries = [(outage, None), (None, ack), (updated, None), (closed, None)]
>>> supervisor = Scope(Role.SUPERVISOR, "Montgomery County 911", "sup-anna", ())
>>> [(e["type"], e["at"]) for e in alert_records(entries, supervisor, now=1700000400.0)]
[('alert', 1700000005.0), ('action', 1700000020.5), ('alert', 1700000031.0), ('alert', 1700000400.0)]
>>> school = Scope(Role.SCHOOL, "MCIU", "desk", (), plan=Plan("mciu", ()), id_key=b"k" * 32)
>>> for e in alert_records(entries, school, now=1700000400.0):  # the update, in the open's minute, collapsed
...     print(e["type"], e["at"], e["alert"]["state"] if e["type"] == "alert" else e["action"])
alert 1699999980.0 open
action 1699999980.0 {'action': 'ack', 'at': 1699999980.0}
alert 1700000400.0 closed
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.disclosure import minute
from gateway.policy import Scope, view
from gateway.tokens import PARTNER_ROLES

#: what supervisors and commanders see of an action (as in the hub's ``action`` frames)
PRECISE_ACTION_KEYS = ("alert_id", "action", "by", "role", "agency", "note", "at")


def alert_records(
    entries: Iterable[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]],
    scope: Scope,
    now: float,
    latest: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The entries of one alert as ``scope`` may see them: ``{"type": "alert", "at", "alert"}`` and
    ``{"type": "action", "at", "action"}``, in the order given.

    ``entries``: ``(alert record, None)`` or ``(None, action)`` pairs of one alert, oldest first, as the
    alerts stream holds them (:func:`gateway.hub.parse_entry`). An action is shown when the alert it names
    (its ``alert``, else ``latest``: the alert's latest record) is in scope. The caller decides first
    whether the alert as a whole is in scope (the view of its latest record), as ``/api/alerts`` does.
    """
    partner = scope.role in PARTNER_ROLES
    out: list[dict[str, Any]] = []
    last_view: dict[str, Any] | None = None
    for alert, action in entries:
        if alert is not None:
            seen = view(alert, scope, now)
            if seen is None:
                continue
            if partner:
                if seen == last_view:
                    continue  # nothing the partner sees changed: the update only says that calls came in
                last_view = seen
            out.append({"type": "alert", "at": seen.get("at"), "alert": seen})
        elif action is not None:
            raw = action.get("alert")
            raw = raw if isinstance(raw, Mapping) else latest
            if raw is None or view(raw, scope, now) is None:
                continue
            if partner:
                # that it was handled and when (to the minute), not by whom nor the note (free text)
                shown: dict[str, Any] = {"action": action.get("action"), "at": minute(action.get("at"))}
            else:
                shown = {k: action.get(k) for k in PRECISE_ACTION_KEYS}
            out.append({"type": "action", "at": shown["at"], "action": shown})
    return out
