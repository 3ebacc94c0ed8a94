"""The doors calls come in by, as a supervisor sees them: alive and quiet, or stalled (pure).

A feed outage (:mod:`detectors.outage`) says that no call came for longer than
the jurisdiction's rate makes plausible. It cannot say why: the city may be
quiet, or the door may be broken. Each live door therefore leaves a status hash
in Redis that the gateway reads back (``GET /api/doors``, the dashboard's
"Doors in" line):

=====================================  ==========================================================
key                                    written by
=====================================  ==========================================================
``P:intake:doors``                     a set of the status hashes below (members ``poll:<name>``,
                                       ``http:<source>``), so the gateway needs no scan
``P:intake:poll:<name>``               the Socrata poller after every poll
                                       (:meth:`streams.intake.feedstate.PollStatus.fields`)
``P:intake:http:<source>``             the HTTP intake after every authenticated request
                                       (:func:`http_fields`)
=====================================  ==========================================================

Health is worked out again when the hash is read (:func:`read_door`), from
the times it holds and the reader's clock, because a door that died cannot
write that it is stalled:

- a **poller** is ``stalled`` when no poll completed for three intervals,
  ``failing`` after its unhealthy count of failed polls in a row, ``quiet``
  when its polls complete and find nothing new (a quiet city, or a portal
  that stopped updating: its ``newest_event_at`` tells), else ``ok``
  (:meth:`~streams.intake.feedstate.PollStatus.health`);
- a **CAD source** is ``silent`` when it sent no request for three of its
  heartbeats (a CAD with nothing to send pushes ``{"events": []}`` every
  ``heartbeat_s``: docs/intake.md), ``quiet`` when its requests come but
  brought no call for that long, else ``ok``.

Examples
--------
>>> f = http_fields("dev-cad", heartbeat_s=60.0, now=1000.0, accepted_calls=2, newest_event_at=990.0)
>>> d = read_door("http:dev-cad", f, now=1030.0)
>>> d.kind, d.name, d.health, d.sentence
('http', 'dev-cad', 'ok', 'CAD source dev-cad: last push 30 s ago.')
>>> read_door("http:dev-cad", f, now=1300.0).sentence
'CAD source dev-cad is silent: no push for 5 min (a live CAD pushes at least every 60 s). Calls from it are not arriving.'
>>> hb = http_fields("dev-cad", heartbeat_s=60.0, now=1290.0, accepted_calls=0, newest_event_at=None, previous=f)
>>> read_door("http:dev-cad", hb, now=1300.0).health
'quiet'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from streams.intake.feedstate import PollStatus

#: Kinds of door and their status hashes' key stems.
KINDS = ("poll", "http")
#: A status hash older than this is no longer listed (the door was retired): two weeks.
FORGET_AFTER_S = 14 * 86400.0


def doors_key(prefix: str) -> str:
    """The set of status hashes.

    >>> doors_key("wf")
    'wf:intake:doors'
    """
    return f"{prefix}:intake:doors"


def door_key(prefix: str, member: str) -> str:
    """The status hash of a member of :func:`doors_key` (``poll:<name>`` or ``http:<source>``).

    >>> door_key("wf", "http:dev-cad")
    'wf:intake:http:dev-cad'
    """
    kind, _, name = member.partition(":")
    if kind not in KINDS or not name:
        raise ValueError(f"door {member!r}; expected 'poll:<name>' or 'http:<source>'")
    return f"{prefix}:intake:{kind}:{name}"


@dataclass(frozen=True)
class Door:
    """One door's state as read at ``now``: what the dashboard shows and ``GET /api/doors`` returns."""

    kind: str
    name: str
    health: str
    #: one sentence for a supervisor
    sentence: str
    #: the last time the door was seen working (a completed poll, a request), epoch seconds
    last_seen_at: float | None
    #: the newest event time it brought in
    newest_event_at: float | None
    #: the last error it reported (pollers), empty when none
    last_error: str

    def as_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "name": self.name,
            "health": self.health,
            "sentence": self.sentence,
            "last_seen_at": self.last_seen_at,
            "newest_event_at": self.newest_event_at,
            "last_error": self.last_error,
        }


def http_fields(
    source: str,
    *,
    heartbeat_s: float,
    now: float,
    accepted_calls: int,
    newest_event_at: float | None,
    previous: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The CAD source's status hash after a request at ``now`` that brought ``accepted_calls`` new calls.

    ``previous`` is the hash as it was (its ``last_call_at`` and ``newest_event_at`` carry on when this request
    brought none); the intake writes only the fields that change, so passing it is for tests and readers.
    """
    old = previous or {}
    out = {"name": source, "heartbeat_s": f"{heartbeat_s:g}", "last_request_at": f"{now:.3f}"}
    if accepted_calls > 0:
        out["last_call_at"] = f"{now:.3f}"
    elif "last_call_at" in old:
        out["last_call_at"] = old["last_call_at"]
    newest = _time(old.get("newest_event_at"))
    if newest_event_at is not None and (newest is None or newest_event_at > newest):
        newest = newest_event_at
    if newest is not None:
        out["newest_event_at"] = f"{newest:.3f}"
    return out


def read_door(member: str, fields: Mapping[str, str], now: float) -> Door:
    """The door ``member`` of the set, from its status hash ``fields`` (text values), as of ``now``.

    Raises ``ValueError`` for a member that names no kind (the set is written by Watchfloor's own doors only).
    """
    kind, _, name = member.partition(":")
    if kind == "poll":
        return _poll(name, fields, now)
    if kind == "http":
        return _http(name, fields, now)
    raise ValueError(f"door {member!r}; expected 'poll:<name>' or 'http:<source>'")


def is_forgotten(fields: Mapping[str, str], now: float) -> bool:
    """Whether a status hash was last written more than :data:`FORGET_AFTER_S` ago (or never says when)."""
    t = _time(fields.get("written_at") or fields.get("last_request_at"))
    return t is None or now - t > FORGET_AFTER_S


def _poll(name: str, f: Mapping[str, str], now: float) -> Door:
    interval = _time(f.get("interval_s")) or 60.0
    status = PollStatus(
        name=name,
        url=f.get("url", ""),
        interval_s=interval,
        unhealthy_after=_int(f.get("unhealthy_after"), 5),
        started_at=_time(f.get("started_at")) or 0.0,
        last_success_at=_time(f.get("last_success_at")),
        last_new_rows_at=_time(f.get("last_new_rows_at")),
        consecutive_failures=_int(f.get("consecutive_failures"), 0),
        newest_event_at=_time(f.get("newest_event_at")),
    )
    health = status.health(now)
    seen = status.last_success_at
    error = f.get("last_error", "")
    since = "no poll has completed yet" if seen is None else f"no poll has completed for {_ago(now - seen)}"
    if health == "stalled":
        why = f" (last error: {error})" if error else ""
        sentence = (
            f"Poller {name} is stalled: {since}{why}. Calls from it are not arriving; "
            "a feed outage alert now means the poller, not a quiet city."
        )
    elif health == "failing":
        sentence = f"Poller {name} is failing: {status.consecutive_failures} polls in a row failed (last error: {error or 'none given'})."
    elif health == "quiet":
        newest = status.newest_event_at
        tail = "" if newest is None else f"; the newest call it has read is {_ago(now - newest)} old"
        sentence = f"Poller {name} is working but quiet: polls complete and find no new calls{tail}."
    elif health == "starting":
        sentence = f"Poller {name} is starting: no poll has completed yet."
    else:
        sentence = f"Poller {name}: last poll {_ago(now - seen) if seen is not None else 'never'} ago, new calls read."
    return Door("poll", name, health, sentence, seen, status.newest_event_at, error)


def _http(name: str, f: Mapping[str, str], now: float) -> Door:
    heartbeat = _time(f.get("heartbeat_s")) or 60.0
    last = _time(f.get("last_request_at"))
    last_call = _time(f.get("last_call_at"))
    newest = _time(f.get("newest_event_at"))
    limit = 3 * heartbeat
    if last is None or now - last > limit:
        since = "no push yet" if last is None else f"no push for {_ago(now - last)}"
        health = "silent"
        sentence = (
            f"CAD source {name} is silent: {since} (a live CAD pushes at least every {_ago(heartbeat)}). Calls from it are not arriving."
        )
    elif last_call is None or now - last_call > limit:
        health = "quiet"
        span = _ago(now - last_call) if last_call is not None else "as long as it has been seen"
        sentence = f"CAD source {name} is connected but quiet: it pushes, with no new call for {span}."
    else:
        health = "ok"
        sentence = f"CAD source {name}: last push {_ago(now - last)} ago."
    return Door("http", name, health, sentence, last, newest, "")


def _time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _ago(seconds: float) -> str:
    """A duration in words.

    >>> _ago(30), _ago(300), _ago(7200), _ago(200000)
    ('30 s', '5 min', '2 h', '2 d')
    """
    s = max(0.0, seconds)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.0f} h"
    return f"{s / 86400:.0f} d"
