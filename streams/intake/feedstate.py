"""What a feed poller remembers and decides: its checkpoint, the ids it sent, each page's events, its health (pure).

:mod:`streams.intake.poller` reads pages of records from an open-data API;
this module turns one page into what to send and what to remember, without
I/O, so that every decision is tested with plain data.

Exactly once
------------
The poller re-reads on purpose: from its checkpoint inclusive (rows published
late with the same cursor value), ``lookback`` seconds before it (rows
published late with an earlier value, when the cursor is the time column),
and after a crash between Kafka's acknowledgement and the checkpoint's write.
A re-read row is recognised by its id in :class:`Memory`: the calls sent, by
id, with the fields and the status times they were sent with.

For each row of a page (:func:`plan_page`):

``new``
    An id not in memory: its call and updates are sent, and remembered.
``already_sent``
    The id was sent with the same fields and status times: nothing is sent.
``new_status``
    The id was sent, and the row now has a status time it did not have (a
    dispatch time filled in later): only that update is sent (the worker does
    not deduplicate updates, so one is never sent twice).
``edited``
    The id was sent and the row's call fields (coordinates, type, time) or an
    already sent status time changed: nothing is re-sent (the counts of the
    window it was counted in cannot be changed afterwards), the change is
    logged and counted, and the new fields are remembered so that the same
    edit is counted once.
``beyond_memory``
    An id not in memory whose call was received before the memory's floor
    (the oldest time still remembered): it may have been sent and forgotten,
    so it is skipped rather than risk a second count.

A row that cannot be read, or whose call the validator refuses, goes to the
dead-letter topic once: its record's hash is remembered as well.

Memory is bounded by time: entries whose call was received more than
``window_s`` before the newest call read are forgotten, and the floor rises
to that time (:meth:`Memory.prune`). The adapter keeps memory and
checkpoint in Redis (``{prefix}:intake:poll:{name}:sent`` and
``...:checkpoint``), written in one transaction after Kafka acknowledged the
page's events.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.ingest.schema import Call, Event, IncidentUpdate, InvalidRecord, parse_event
from streams.ingest.sources import Rejected, Row

__all__ = [
    "CHECKPOINT_VERSION", "Checkpoint", "FeedError", "Memory", "PagePlan", "PollStatus", "Refusal", "Sent", "plan_page",
]  # fmt: skip

CHECKPOINT_VERSION = 1
#: Keys of the call that say what it is (``type``, ``v`` and ``source`` say where it came from).
_CALL_KEYS = ("id", "received_at", "category", "call_type", "priority", "lat", "lng", "agency")


class FeedError(ValueError):
    """A checkpoint or memory entry that cannot be read; the message names it and says what to do."""


@dataclass(frozen=True)
class Checkpoint:
    """Where the poller is: the cursor column, its last value read and sent (None: nothing yet), the floor on the time column.

    ``since`` is fixed at the first start (``--since``) and kept: a restart reads from ``position``, never before
    ``since``. Versioned JSON, :meth:`to_json` / :meth:`from_json`.

    >>> c = Checkpoint(":updated_at", "2024-01-01T08:05:00.000Z", "2024-01-01T00:00:00.000")
    >>> Checkpoint.from_json(c.to_json()) == c
    True
    """

    cursor: str
    position: str | None
    since: str | None
    floor: float = -math.inf

    def to_json(self) -> str:
        floor = None if math.isinf(self.floor) else self.floor
        body = {"v": CHECKPOINT_VERSION, "cursor": self.cursor, "position": self.position, "since": self.since, "floor": floor}
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FeedError(f"the checkpoint is not JSON ({exc}); delete it (--reset) to start again from --since") from None
        if not isinstance(obj, dict) or obj.get("v") != CHECKPOINT_VERSION:
            found = obj.get("v") if isinstance(obj, dict) else type(obj).__name__
            raise FeedError(f"the checkpoint has version {found!r}; expected {CHECKPOINT_VERSION} (--reset starts again from --since)")
        cursor, position, since, floor = obj.get("cursor"), obj.get("position"), obj.get("since"), obj.get("floor")
        if not isinstance(cursor, str) or not all(isinstance(v, str | None) for v in (position, since)):
            raise FeedError(f"the checkpoint {obj!r:.200} lacks cursor/position/since; --reset starts again from --since")
        if floor is not None and not isinstance(floor, int | float):
            raise FeedError(f"the checkpoint's floor is {floor!r:.40}; expected epoch seconds or null")
        return cls(cursor, position, since, -math.inf if floor is None else float(floor))


@dataclass(frozen=True)
class Sent:
    """What was sent for one id: the call's fields, its received time (epoch s) and the status times sent (status -> ``at``)."""

    received: float
    call: dict[str, Any] = field(hash=False)
    statuses: dict[str, str] = field(hash=False, default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"r": self.received, "c": self.call, "s": self.statuses}, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, key: str, text: str | bytes) -> Sent:
        try:
            obj = json.loads(text)
            return cls(float(obj["r"]), dict(obj["c"]), {str(k): str(v) for k, v in obj["s"].items()})
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FeedError(f"the memory entry for {key!r} is not one the poller wrote ({exc!r:.80}); --reset clears it") from None


class Memory:
    """The ids sent (and refused records' hashes) whose call was received at or after ``floor``; see the module."""

    def __init__(self, entries: Mapping[str, Sent] | None = None, floor: float = -math.inf, window_s: float = 48 * 3600.0) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        self.entries: dict[str, Sent] = dict(entries or {})
        self.floor = floor
        self.window_s = window_s
        #: The latest call received time remembered (epoch s), or None.
        self.newest: float | None = max((s.received for s in self.entries.values() if math.isfinite(s.received)), default=None)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> Sent | None:
        return self.entries.get(key)

    def apply(self, writes: Mapping[str, Sent]) -> None:
        """Remember what a page sent (call after Kafka acknowledged it)."""
        self.entries.update(writes)
        for sent in writes.values():
            if self.newest is None or sent.received > self.newest:
                self.newest = sent.received

    def prune(self) -> list[str]:
        """Forget entries received more than ``window_s`` before the newest remembered; the keys forgotten. The floor rises.

        >>> m = Memory({"a": Sent(0.0, {}), "b": Sent(100.0, {})}, window_s=50)
        >>> m.prune(), m.floor, list(m.entries)
        (['a'], 50.0, ['b'])
        """
        if self.newest is None:
            return []
        floor = self.newest - self.window_s
        if floor <= self.floor:
            return []
        gone = [k for k, s in self.entries.items() if s.received < floor]
        for k in gone:
            del self.entries[k]
        self.floor = floor
        return gone


@dataclass(frozen=True)
class Refusal:
    """A record refused: for the dead-letter topic (``reason``, ``detail``, the record's bytes, its place in the read)."""

    reason: str
    detail: str
    raw: bytes
    key: str
    offset: int | None


@dataclass
class PagePlan:
    """What one page gives: events to send (in order), refusals, the memory writes, the outcome counts, the cursor reached.

    ``outcomes`` counts ``read``, ``sent_calls``, ``sent_updates`` and ``skipped|<reason>`` / ``rejected|<reason>``.
    ``position`` is the last record's cursor value; ``newest_event`` the latest received time read (epoch s).
    ``edits`` describes each ``edited`` row for the log.
    """

    events: list[Event] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    writes: dict[str, Sent] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    position: str | None = None
    newest_event: float | None = None
    edits: list[str] = field(default_factory=list)


def _refusal_key(raw: bytes) -> str:
    return "refused:" + hashlib.sha256(raw).hexdigest()[:32]


def _fields(call: Mapping[str, Any]) -> dict[str, Any]:
    return {k: call.get(k) for k in _CALL_KEYS}


def plan_page(
    items: Iterable[Row | Rejected],
    positions: Sequence[str],
    memory: Memory,
    *,
    now: float,
    offset: int = 0,
) -> PagePlan:
    """Decide a page: ``items`` from :func:`streams.ingest.sources.parse_records` (one per record, in order).

    ``positions`` are the records' cursor values.

    Nothing is changed here: after the events are acknowledged, ``memory.apply(plan.writes)``. ``now`` is the
    validating clock (:func:`streams.ingest.schema.parse_event`); ``offset`` the page's first record's index in the
    read (the dead letters' ``offset``). See the module for the outcomes.
    """
    plan = PagePlan()
    clock = memory.newest if memory.newest is not None else now
    seen: dict[str, Sent] = {}  # this page's writes, so that an id twice on one page is decided once

    def known(key: str) -> Sent | None:
        return seen.get(key) or memory.get(key)

    for item in items:
        plan.outcomes["read"] += 1
        if isinstance(item, Rejected):
            _refuse(plan, seen, known, item.reason, item.detail, item.raw, offset + item.line - 1, clock)
            continue
        try:
            call = parse_event(json.dumps(item.call, separators=(",", ":")).encode(), now=now).event
        except InvalidRecord as exc:
            _refuse(
                plan, seen, known, exc.reason.value, f"call {item.call.get('id')!r}: {exc.detail}", item.raw, offset + item.line - 1, clock
            )
            continue
        assert isinstance(call, Call)
        updates: list[IncidentUpdate] = []
        for upd in item.updates:
            try:
                parsed = parse_event(json.dumps(upd, separators=(",", ":")).encode(), now=now).event
            except InvalidRecord as exc:
                detail = f"call {call.id!r}, update {upd.get('status')!r}: {exc.detail}"
                _refuse(plan, seen, known, exc.reason.value, detail, item.raw, offset + item.line - 1, clock)
                continue
            assert isinstance(parsed, IncidentUpdate)
            updates.append(parsed)
        for r in item.refused:
            detail = f"call {call.id!r}, update {r.status!r}: {r.detail}"
            _refuse(plan, seen, known, r.reason, detail, json.dumps(r.update).encode(), offset + item.line - 1, clock)
        plan.newest_event = call.received_at if plan.newest_event is None else max(plan.newest_event, call.received_at)
        _decide(plan, seen, known(call.id), call, updates, memory.floor)
    if positions:
        plan.position = next((p for p in reversed(positions) if p), None)
    return plan


def _refuse(
    plan: PagePlan,
    seen: dict[str, Sent],
    known: Callable[[str], Sent | None],
    reason: str,
    detail: str,
    raw: bytes,
    offset: int,
    clock: float,
) -> None:
    """A refusal, once per record and reason; remembered at the newest event time read (``clock`` before any)."""
    key = _refusal_key(raw + detail.encode())
    if known(key) is not None:
        plan.outcomes["skipped|already_refused"] += 1
        return
    plan.refusals.append(Refusal(reason, detail, raw, key, offset))
    plan.outcomes[f"rejected|{reason}"] += 1
    seen[key] = plan.writes[key] = Sent(plan.newest_event if plan.newest_event is not None else clock, {})


def _decide(plan: PagePlan, seen: dict[str, Sent], before: Sent | None, call: Call, updates: list[IncidentUpdate], floor: float) -> None:
    fields = _fields(call.to_json())
    statuses = {u.status.value: u.to_json()["at"] for u in updates}
    if before is None:
        if call.received_at < floor:
            plan.outcomes["skipped|beyond_memory"] += 1
            return
        plan.events.append(call)
        plan.events.extend(updates)
        plan.outcomes["sent_calls"] += 1
        plan.outcomes["sent_updates"] += len(updates)
        seen[call.id] = plan.writes[call.id] = Sent(call.received_at, fields, statuses)
        return
    fresh = [u for u in updates if u.status.value not in before.statuses]
    changed = sorted(k for k in _CALL_KEYS if before.call.get(k) != fields[k])
    moved = sorted(s for s, at in statuses.items() if s in before.statuses and before.statuses[s] != at)
    if fresh:
        plan.events.extend(fresh)
        plan.outcomes["sent_updates"] += len(fresh)
        plan.outcomes["skipped|new_status"] += 1
    if changed or moved:
        plan.outcomes["skipped|edited"] += 1
        what = [f"{k} {before.call.get(k)!r} -> {fields[k]!r}" for k in changed]
        what += [f"{s} time {before.statuses[s]} -> {statuses[s]}" for s in moved]
        plan.edits.append(f"call {call.id!r} was edited after it was sent ({'; '.join(what)}); not re-sent")
    elif not fresh:
        plan.outcomes["skipped|already_sent"] += 1
    if fresh or changed or moved:
        merged = {**before.statuses, **{u.status.value: statuses[u.status.value] for u in fresh}}
        for s in moved:
            merged[s] = statuses[s]  # remembered as now published, so that the same edit is counted once
        seen[call.id] = plan.writes[call.id] = Sent(before.received, fields, merged)


# --------------------------------------------------------------------------- status


@dataclass
class PollStatus:
    """The poller's health for operators (the Redis hash ``{prefix}:intake:poll:{name}``, ``/metrics``).

    Times are epoch seconds (None: never). ``last_success_at``: the last poll that completed (every page read and
    sent); ``last_new_rows_at``: the last poll that found a row not sent before. A poller is **stalled** when it has
    not completed a poll for ``3 x interval_s`` (it may be dead, stuck, or failing); it is **quiet** when its polls
    complete but found nothing new for that long (a quiet city, or a feed the portal stopped updating: compare
    ``newest_event_at``). :meth:`health` says which.
    """

    name: str
    url: str
    interval_s: float
    unhealthy_after: int
    started_at: float
    last_attempt_at: float | None = None
    last_success_at: float | None = None
    last_new_rows_at: float | None = None
    consecutive_failures: int = 0
    last_error: str = ""
    newest_event_at: float | None = None
    position: str | None = None
    counts: Counter[str] = field(default_factory=Counter)

    def health(self, now: float) -> str:
        """``stalled``, ``failing`` (``unhealthy_after`` failures in a row), ``quiet``, ``starting`` or ``ok``.

        >>> s = PollStatus("sea", "u", 60.0, 5, started_at=0.0, last_success_at=1000.0, last_new_rows_at=500.0)
        >>> s.health(1100.0), s.health(1200.0)
        ('quiet', 'stalled')
        >>> PollStatus("sea", "u", 60.0, 5, started_at=0.0, last_success_at=1000.0, last_new_rows_at=990.0).health(1010.0)
        'ok'
        """
        limit = 3 * self.interval_s
        if (self.last_success_at if self.last_success_at is not None else self.started_at) < now - limit:
            return "stalled"
        if self.consecutive_failures >= self.unhealthy_after:
            return "failing"
        if self.last_success_at is None:
            return "starting"
        if self.last_new_rows_at is None or self.last_new_rows_at < now - limit:
            return "quiet"
        return "ok"

    def lag_s(self, now: float) -> float | None:
        """Now minus the newest event time read (how far behind real time the feed is, portal delay included)."""
        return None if self.newest_event_at is None else now - self.newest_event_at

    def fields(self, now: float) -> dict[str, str]:
        """The Redis hash's fields (text; empty for never), with ``health`` and ``lag_s`` as of ``now``."""

        def t(v: float | None) -> str:
            return "" if v is None else f"{v:.3f}"

        out = {
            "name": self.name, "url": self.url, "health": self.health(now), "interval_s": f"{self.interval_s:g}",
            "unhealthy_after": str(self.unhealthy_after),
            "stalled_after_s": f"{3 * self.interval_s:g}", "started_at": t(self.started_at), "written_at": t(now),
            "last_attempt_at": t(self.last_attempt_at), "last_success_at": t(self.last_success_at),
            "last_new_rows_at": t(self.last_new_rows_at), "consecutive_failures": str(self.consecutive_failures),
            "last_error": self.last_error[:500], "newest_event_at": t(self.newest_event_at), "lag_s": t(self.lag_s(now)),
            "position": self.position or "",
        }  # fmt: skip
        out.update({f"count|{k}": str(v) for k, v in sorted(self.counts.items())})
        return out

    def prometheus(self, now: float) -> str:
        """The status in the Prometheus text format (``watchfloor_poll_*`` families, label ``feed``).

        >>> s = PollStatus("sea", "u", 60.0, 5, started_at=0.0, last_success_at=90.0, newest_event_at=30.0)
        >>> s.counts.update({"read": 3, "skipped|already_sent": 1})
        >>> print(s.prometheus(100.0), end="")  # doctest: +ELLIPSIS
        # HELP watchfloor_poll_up 1 when the last poll completed and the poller is not stalled or failing.
        # TYPE watchfloor_poll_up gauge
        watchfloor_poll_up{feed="sea"} 1
        ...
        watchfloor_poll_rows_total{feed="sea",outcome="read"} 3
        watchfloor_poll_rows_total{feed="sea",outcome="skipped",reason="already_sent"} 1
        """
        feed = f'feed="{_label(self.name)}"'
        health = self.health(now)
        lines: list[str] = []

        def family(name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
            lines.extend([f"# HELP watchfloor_poll_{name} {text}", f"# TYPE watchfloor_poll_{name} {kind}"])
            lines.extend(f"watchfloor_poll_{name}{{{labels}}} {value:g}" for labels, value in samples)

        family("up", "gauge", "1 when the last poll completed and the poller is not stalled or failing.", [
            (feed, 1.0 if health in ("ok", "quiet") else 0.0)])  # fmt: skip
        family("stalled", "gauge", "1 when no poll completed for 3 intervals.", [(feed, 1.0 if health == "stalled" else 0.0)])
        family("quiet", "gauge", "1 when polls complete but found no new row for 3 intervals.", [(feed, 1.0 if health == "quiet" else 0.0)])
        family("consecutive_failures", "gauge", "Failed page reads or sends in a row.", [(feed, float(self.consecutive_failures))])
        for name, value, text in (
            ("last_success_timestamp_seconds", self.last_success_at, "When the last poll completed."),
            ("last_new_rows_timestamp_seconds", self.last_new_rows_at, "When a poll last found a row not sent before."),
            ("newest_event_timestamp_seconds", self.newest_event_at, "The newest call's received time read."),
            ("lag_seconds", self.lag_s(now), "Now minus the newest call's received time read."),
        ):
            if value is not None:
                family(name, "gauge", text, [(feed, value)])
        samples = []
        for key, n in sorted(self.counts.items()):
            outcome, _, reason = key.partition("|")
            samples.append((feed + f',outcome="{_label(outcome)}"' + (f',reason="{_label(reason)}"' if reason else ""), float(n)))
        family("rows_total", "counter", "Rows read, calls and updates sent, rows skipped and rejected (by reason), since start.", samples)
        return "\n".join(lines) + "\n"


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
