"""What a client is sent for one entry of the alerts stream (pure: the one implementation of a frame).

Every way an alert leaves the gateway as a frame goes through :func:`frame_for`: the
hub's WebSocket sessions (:mod:`gateway.hub`) and the partners' outbound feeds
(:mod:`gateway.feeds`: signed webhooks, the CAP feed). Given a stream entry (an
``alert`` record of the worker or an ``action`` of a supervisor) and a scope, it
returns the frame that scope receives, or None. A partner is then sent an
``alert`` frame only when :func:`first_showing` says its view changed since the
last one it was sent (an update that changes nothing a partner sees would date a
call), whatever the channel.

=============  =============================================================================
entry          frame
=============  =============================================================================
alert          ``{"type": "alert", "id", "alert"}``: the view (:func:`gateway.policy.view`)
               with ``status``: supervisors and commanders the last action as written;
               partners ``{action, at}`` with the time to the minute (not who, not the note)
action         ``{"type": "action", "id", "action"}``, to whoever may see the alert now:
               supervisors and commanders the action as written; partners
               ``{alert_id, action, at}`` (their opaque id, the time to the minute)
=============  =============================================================================

``id`` is the stream id, sealed for partners (:func:`gateway.policy.cursor_for`).

Examples
--------
>>> from gateway.policy import Scope
>>> from gateway.tokens import Role
>>> sup = Scope(Role.SUPERVISOR, "911", "sup-1", ())
>>> raw = {"id": "surge:882aac9599fffff:1", "kind": "surge", "state": "open", "score": 7.0, "observed": 9, "cells": []}
>>> f = frame_for("5-0", raw, None, sup, status=None, known=None, now=0.0)
>>> f.kind, f.view["severity"], f.text[:36]
('alert', 'medium', '{"type":"alert","id":"5-0","alert":{')
>>> frame_for("6-0", None, {"alert_id": "surge:882aac9599fffff:1", "action": "ack", "at": 61.5}, sup,
...           status=None, known=raw, now=0.0).kind
'action'
>>> shown = {}
>>> first_showing(shown, {"id": "a-1", "state": "open"}), first_showing(shown, {"id": "a-1", "state": "open"})
(True, False)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from gateway.disclosure import minute
from gateway.policy import Scope, cursor_for, view
from gateway.protocol import frame
from gateway.tokens import Role

#: roles shown who acted on an alert and their note
_PRECISE = (Role.SUPERVISOR, Role.COMMANDER)


@dataclass(frozen=True)
class Framed:
    """One entry as one scope receives it: ``kind`` (``alert`` or ``action``), the alert's ``view`` (for
    filters and the partners' feeds), the ``raw`` alert it was made from, the ``payload`` (the frame's
    ``alert`` or ``action`` object) and the frame's JSON ``text`` (what is sent)."""

    kind: str
    view: dict[str, Any]
    raw: Mapping[str, Any]
    payload: dict[str, Any]
    text: str


def frame_for(
    sid: str,
    alert: Mapping[str, Any] | None,
    action: Mapping[str, Any] | None,
    scope: Scope,
    *,
    status: Mapping[str, Any] | None,
    known: Mapping[str, Any] | None,
    now: float,
) -> Framed | None:
    """The frame ``scope`` receives for the stream entry ``sid`` (its ``alert`` record or its ``action``), or None.

    ``status`` is the alert's last action (``P:alert_status``: for alert entries); ``known`` is the latest
    record of the alert an action names, when the action does not carry it. A partner's ``alert`` frame
    must then pass :func:`first_showing` before it is sent.
    """
    if alert is not None:
        seen = view(alert, scope, now)
        if seen is None:
            return None
        if scope.role in _PRECISE:
            seen["status"] = status
        elif status is not None:
            # partners: not who, not the note, the time to the minute (as in action frames and /api/alerts)
            seen["status"] = {"action": status["action"], "at": minute(status["at"])}
        return Framed("alert", seen, alert, seen, frame("alert", id=cursor_for(sid, scope), alert=seen))
    if action is not None:
        # an action goes to every client that may see its alert now, whether or not it was sent the
        # alert (it may have read it from /api/alerts, or before a reconnect)
        raw = action.get("alert")
        if not isinstance(raw, dict):
            raw = known
        if raw is None:
            return None
        seen = view(raw, scope, now)
        if seen is None:
            return None
        if scope.role in _PRECISE:
            shown = {k: action.get(k) for k in ("alert_id", "action", "by", "role", "agency", "note", "at")}
        else:
            # partners learn that it was handled, not by whom or with what note (free text)
            shown = {"alert_id": seen["id"], "action": action["action"], "at": minute(action.get("at"))}
        return Framed("action", seen, raw, shown, frame("action", id=cursor_for(sid, scope), action=shown))
    return None


def status_of(action: Mapping[str, Any]) -> dict[str, Any]:
    """The alert status an action entry sets (``P:alert_status``, the hub's ``status``): what was done, by whom, when.

    >>> status_of({"alert_id": "x", "action": "ack", "by": "sup-1", "at": 5.0, "alert": {}})["action"]
    'ack'
    """
    return {k: action.get(k) for k in ("action", "by", "role", "agency", "note", "at")}


def view_digest(seen: Mapping[str, Any]) -> str:
    """A short digest of a view as it is shown (the same views give the same digest).

    >>> view_digest({"id": "a-1", "state": "open"}) == view_digest({"id": "a-1", "state": "open"})
    True
    """
    text = json.dumps(seen, separators=(",", ":"), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def first_showing(shown: MutableMapping[str, str], seen: Mapping[str, Any]) -> bool:
    """Whether a partner is sent this ``alert`` view: True unless it is the view it was last sent of that alert.

    ``shown`` (alert id -> :func:`view_digest` of the view last sent) is updated: the alert's entry is
    replaced, or dropped once the alert is closed (nothing more comes of it). Partners only: an update
    that changes nothing they see is not sent, since each frame would date a call.
    """
    digest = view_digest(seen)
    alert_id = str(seen["id"])
    if shown.get(alert_id) == digest:
        return False
    shown[alert_id] = digest
    if seen.get("state") == "closed":
        shown.pop(alert_id, None)
    return True
