"""What the intake makes of one authenticated request (pure: plain data in, plain data out).

The service (:mod:`streams.intake.service`) calls, in order:

1. :func:`split_body`: the JSON body to its records (one event object, or
   ``{"events": [...]}``), or :class:`BodyError` (400, or 413 for too many);
2. :func:`examine`: each record validated with
   :func:`~streams.ingest.schema.parse_event` after its ``source`` is set to the
   authenticated source, a call's ``agency`` checked against the source's
   (:attr:`Reason.WRONG_AGENCY <streams.ingest.schema.Reason>`), and its
   idempotency key derived (:class:`IntakeKeys`);
3. :func:`check_owners` with the owners Redis holds for the call ids in
   :func:`owner_lookups`: an update is accepted only for a call this source sent
   (``unknown_call``) and not timed before it beyond the source's tolerance
   (``status_before_received``), a call only if no other source sent its id (``duplicate_id``);
4. :func:`mark_repeats`: a record repeated within the request is a duplicate of its first copy;
5. claims in Redis, then :func:`settle` with what the claims found.

Each :class:`Candidate` ends with an :class:`Outcome` and, for the answer,
:meth:`Candidate.answer`.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from streams.ingest.schema import Call, Event, Extent, IncidentUpdate, InvalidRecord, Reason, format_time, parse_event
from streams.intake.sources import MAX_EVENTS, Source

#: Value of a claimed idempotency key while its records are being published, and once they are acknowledged.
PENDING = "pending"
DONE = "done"


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


class BodyError(ValueError):
    """The request body is not something the intake takes; ``status`` is the HTTP status to answer (400 or 413)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def split_body(body: bytes, max_events: int = MAX_EVENTS) -> list[object]:
    """The records of a request body: one JSON event object, or an object whose ``events`` is a list of them.

    >>> split_body(b'{"type": "call"}'), split_body(b'{"events": [{"type": "call"}, 3]}')
    ([{'type': 'call'}], [{'type': 'call'}, 3])
    >>> split_body(b'[1]')
    Traceback (most recent call last):
    ...
    streams.intake.core.BodyError: expected a JSON object (one event, or {"events": [...]}), found list
    """
    try:
        obj = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise BodyError(400, "the body is not UTF-8; send JSON encoded as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise BodyError(400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (RecursionError, ValueError) as exc:
        raise BodyError(400, f"the body is JSON the intake cannot read ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise BodyError(400, f'expected a JSON object (one event, or {{"events": [...]}}), found {type(obj).__name__}')
    if "events" not in obj:
        return [obj]
    events = obj["events"]
    if not isinstance(events, list):
        raise BodyError(400, f"'events' must be a list of event objects, found {type(events).__name__}")
    if len(events) > max_events:
        raise BodyError(413, f"{len(events)} events in one request; at most {max_events} are taken: split the batch")
    return events


@dataclass(frozen=True)
class IntakeKeys:
    """The Redis keys of the intake, all under ``{prefix}:intake:``.

    >>> k = IntakeKeys("wf")
    >>> k.audit_prefix, k.owner("MC-1"), k.claim("dev", "call", "MC-1")
    ('wf:intake', 'wf:intake:owner:MC-1', 'wf:intake:seen:dev:call:MC-1')
    >>> k.tried(k.claim("dev", "call", "MC-1"))
    'wf:intake:tried:dev:call:MC-1'
    """

    prefix: str

    @property
    def audit_prefix(self) -> str:
        """The prefix :class:`gateway.audit.AuditLog` takes: its stream is ``{prefix}:intake:audit``."""
        return f"{self.prefix}:intake"

    def owner(self, call_id: str) -> str:
        return f"{self.prefix}:intake:owner:{call_id}"

    def claim(self, source: str, kind: str, ident: str) -> str:
        return f"{self.prefix}:intake:seen:{source}:{kind}:{ident}"

    def tried(self, claim_key: str) -> str:
        """The key holding when a record was first claimed to be published and not yet marked done (see :func:`resumed`)."""
        return claim_key.replace(":intake:seen:", ":intake:tried:", 1)


@dataclass
class Candidate:
    """One record of a request on its way to an :class:`Outcome`.

    ``raw`` is the record as received (canonical JSON), what a dead letter keeps;
    ``event`` is the validated event (None when refused); ``key`` is its
    idempotency key; ``send`` whether this request is to publish it (the event,
    or its dead letter).
    """

    index: int
    raw: bytes
    record_id: str | None
    key: str
    event: Event | None = None
    reason: str | None = None
    detail: str = ""
    outcome: Outcome | None = None
    send: bool = False
    dropped_fields: int = 0

    def refuse(self, reason: str, detail: str) -> None:
        self.event, self.reason, self.detail = None, reason, detail

    def answer(self) -> dict[str, Any]:
        """This record's entry in the JSON answer."""
        out: dict[str, Any] = {"index": self.index, "id": self.record_id, "outcome": (self.outcome or Outcome.REFUSED).value}
        if self.reason is not None:
            out["reason"], out["detail"] = self.reason, self.detail
        return out


def update_id(call_id: str, status: str, at: float) -> str:
    """How an update is named in answers and keys: ``call_id|status|at``.

    >>> update_id("MC-1", "closed", 1453564931)
    'MC-1|closed|2016-01-23T16:02:11Z'
    """
    return f"{call_id}|{status}|{format_time(at)}"


def canonical(obj: object) -> bytes:
    """A record's bytes, independent of the whitespace and key order it was sent with.

    >>> canonical({"b": 1, "a": "é"})
    b'{"a":"\\xc3\\xa9","b":1}'
    """
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def examine(index: int, obj: object, source: Source, keys: IntakeKeys, *, now: float, extent: Extent | None = None) -> Candidate:
    """Validate one record of ``source``'s request (its ``source`` field set to ``source.id`` first) and derive its key.

    >>> from streams.intake.sources import Source
    >>> src, keys = Source("dev", "dev-agency", b"k" * 32), IntakeKeys("wf")
    >>> call = {"type": "call", "v": 1, "id": "C1", "received_at": "2024-01-01T00:00:00Z", "category": "EMS",
    ...         "call_type": "FALL", "priority": None, "lat": 40.1, "lng": -75.3, "agency": "other", "source": "x"}
    >>> c = examine(0, call, src, keys, now=1.8e9)
    >>> c.event, c.reason, c.key[:31]
    (None, 'wrong_agency', 'wf:intake:seen:dev:refused:d147')
    """
    raw = canonical(obj)
    if isinstance(obj, dict):
        record = canonical({**obj, "source": source.id})
        hint = obj.get("id") if obj.get("type") == "call" else obj.get("call_id")
        record_id = hint if isinstance(hint, str) else None
    else:
        record, record_id = raw, None
    refused_key = keys.claim(source.id, "refused", hashlib.sha256(raw).hexdigest())
    try:
        parsed = parse_event(record, now=now, jurisdiction=extent)
    except InvalidRecord as exc:
        return Candidate(index, raw, record_id, refused_key, reason=exc.reason.value, detail=exc.detail)
    event = parsed.event
    if isinstance(event, Call):
        if event.agency != source.agency:
            detail = f"call {event.id!r} is for agency {event.agency!r}; source {source.id!r} may only send calls of {source.agency!r}"
            return Candidate(index, raw, event.id, refused_key, reason=Reason.WRONG_AGENCY.value, detail=detail)
        return Candidate(index, raw, event.id, keys.claim(source.id, "call", event.id), event, dropped_fields=len(parsed.dropped_fields))
    ident = update_id(event.call_id, event.status.value, event.at)
    return Candidate(index, raw, ident, keys.claim(source.id, "update", ident), event, dropped_fields=len(parsed.dropped_fields))


def owner_lookups(candidates: Iterable[Candidate]) -> list[str]:
    """The call ids whose owners :func:`check_owners` needs, each once, in order of first mention."""
    ids: dict[str, None] = {}
    for c in candidates:
        if isinstance(c.event, Call):
            ids[c.event.id] = None
        elif isinstance(c.event, IncidentUpdate):
            ids[c.event.call_id] = None
    return list(ids)


def owner_value(source: str, received_at: float) -> str:
    """What the owner key of a call holds: the source that sent it and the call's received time.

    >>> owner_value("dev", 1767261600.0)
    'dev 1767261600.000'
    >>> parse_owner(owner_value("dev", 1767261600.0)), parse_owner("dev"), parse_owner(None)
    (('dev', 1767261600.0), ('dev', None), (None, None))
    """
    return f"{source} {received_at:.3f}"


def parse_owner(value: str | None) -> tuple[str | None, float | None]:
    """The source and received time of an owner key's value (source alone from intakes that wrote no time)."""
    if value is None:
        return None, None
    source, _, received = value.partition(" ")
    try:
        return source, float(received) if received else None
    except ValueError:
        return source, None


def check_owners(candidates: Sequence[Candidate], owners: Mapping[str, str | None], source: Source) -> None:
    """Refuse a call whose id another source sent (``duplicate_id``), an update for a call this source has not sent
    (``unknown_call``), and an update timed before its call was received by more than the source's status tolerance
    (``status_before_received``), as every door does; within the tolerance its time becomes the received time
    (clock skew between CAD subsystems: :meth:`streams.ingest.sources._Engine.updates` does the same for files).

    ``owners`` maps call ids to their owner key's value (:func:`owner_value`; None: not known). A call
    earlier in the same request makes its updates acceptable.

    >>> from streams.ingest.schema import Status
    >>> src = Source("dev", "a", b"k" * 32)
    >>> up = Candidate(0, b"", "C9|closed|...", "k", IncidentUpdate("C9", Status.CLOSED, 1.7e9, None, "dev"))
    >>> check_owners([up], {"C9": None}, src)
    >>> up.reason, up.detail
    ('unknown_call', "no call 'C9' from source 'dev' is known (sent earlier, or earlier in this request); send the call first")
    >>> early = Candidate(0, b"", "C9|dispatched|...", "k", IncidentUpdate("C9", Status.DISPATCHED, 1.7e9 - 60, None, "dev"))
    >>> check_owners([early], {"C9": owner_value("dev", 1.7e9)}, src)
    >>> early.event.at == 1.7e9  # a minute early: within the default 120 s, moved to the received time
    True
    >>> late = Candidate(0, b"", "C9|dispatched|...", "k", IncidentUpdate("C9", Status.DISPATCHED, 1.7e9 - 600, None, "dev"))
    >>> check_owners([late], {"C9": owner_value("dev", 1.7e9)}, src)
    >>> late.reason
    'status_before_received'
    """
    own: dict[str, float | None] = {}
    for cid, value in owners.items():
        who, received = parse_owner(value)
        if who == source.id:
            own[cid] = received
    for c in candidates:
        if isinstance(c.event, Call):
            who, _ = parse_owner(owners.get(c.event.id))
            if who is not None and who != source.id:
                c.refuse(Reason.DUPLICATE_ID.value, f"call id {c.event.id!r} was already sent by another source")
            else:
                own[c.event.id] = c.event.received_at
        elif isinstance(c.event, IncidentUpdate):
            if c.event.call_id not in own:
                detail = (
                    f"no call {c.event.call_id!r} from source {source.id!r} is known (sent earlier, or earlier in this request); "
                    "send the call first"
                )
                c.refuse(Reason.UNKNOWN_CALL.value, detail)
                continue
            received = own[c.event.call_id]
            if received is None or c.event.at >= received:
                continue
            early = received - c.event.at
            if early > source.status_tolerance_s:
                c.refuse(
                    Reason.STATUS_BEFORE_RECEIVED.value,
                    f"status {c.event.status.value!r} at {format_time(c.event.at)} is {early:,.0f} s before call "
                    f"{c.event.call_id!r} was received ({format_time(received)}), more than source {source.id!r}'s "
                    f"tolerance of {source.status_tolerance_s:g} s (status_tolerance_s in the sources file)",
                )
            else:
                c.event = replace(c.event, at=received)


def rekey_refused(candidates: Iterable[Candidate], source: Source, keys: IntakeKeys) -> None:
    """Give the records refused by :func:`check_owners` their refused-record key (the SHA-256 of their bytes)."""
    for c in candidates:
        if c.event is None and ":refused:" not in c.key:
            c.key = keys.claim(source.id, "refused", hashlib.sha256(c.raw).hexdigest())


def mark_repeats(candidates: Iterable[Candidate]) -> list[Candidate]:
    """The candidates to claim (each key's first copy); later copies are settled here: duplicate, or refused with no dead letter."""
    first: set[str] = set()
    out = []
    for c in candidates:
        if c.key in first:
            c.outcome = Outcome.REFUSED if c.event is None else Outcome.DUPLICATE
            continue
        first.add(c.key)
        out.append(c)
    return out


def settle(claimed: Sequence[Candidate], won: Sequence[bool], found: Sequence[str | None]) -> list[Candidate]:
    """Outcomes after the claims: ``won[i]`` whether ``claimed[i]``'s key was claimed now, ``found[i]`` its value otherwise.

    A record whose key is :data:`DONE` is a duplicate (a refused one is answered refused
    again, with no second dead letter); a claim won is to be sent. Returns the
    records whose key another request holds :data:`PENDING` (being published now,
    or left by an intake that stopped mid-request): the request must wait for them.
    """
    blocked = []
    for c, ok, value in zip(claimed, won, found, strict=True):
        if ok:
            c.send = True
            c.outcome = Outcome.REFUSED if c.event is None else Outcome.ACCEPTED
        elif value == PENDING:
            blocked.append(c)
        else:  # DONE, or expired between the SET and the GET: either way it was published once
            c.outcome = Outcome.REFUSED if c.event is None else Outcome.DUPLICATE
    return blocked


def resumed(claimed: Sequence[Candidate], won: Sequence[bool], tried: Sequence[str | None]) -> list[tuple[Candidate, float]]:
    """The events this request claimed that an earlier attempt claimed and never marked done, with that attempt's time.

    ``tried[i]`` is what ``claimed[i]``'s tried key held before this request (epoch
    milliseconds as text), None when it had none. An earlier attempt that did not
    finish (its intake died, or Kafka did not acknowledge in time) may have put the
    records on Kafka: the caller looks for them there, from that time on, before it
    publishes them again.

    >>> c = [Candidate(0, b"", "A", "k0", event=object()), Candidate(1, b"", "B", "k1", event=object())]  # type: ignore[arg-type]
    >>> [(x.record_id, t) for x, t in resumed(c, [True, True], [None, "1700000000000"])]
    [('B', 1700000000.0)]
    """
    return [(c, int(t) / 1000) for c, ok, t in zip(claimed, won, tried, strict=True) if ok and t is not None and c.event is not None]


class EventBucket:
    """A token bucket of events: ``burst`` at once, refilled at ``rate`` a second (the caller passes a monotonic clock).

    >>> b = EventBucket(rate=10, burst=500)
    >>> b.take(500, now=0.0), b.take(5, now=0.0), b.take(5, now=0.5)
    (0.0, 0.5, 0.0)
    """

    def __init__(self, rate: float, burst: float) -> None:
        if not rate > 0 or not burst >= 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last: float | None = None

    def take(self, n: int, now: float) -> float:
        """Take ``n`` tokens and return 0.0, or take none and return the seconds until ``n`` are there."""
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + max(0.0, now - self._last) * self.rate)
        self._last = now
        if n <= self._tokens:
            self._tokens -= n
            return 0.0
        return (n - self._tokens) / self.rate


def event_time(event: Event) -> float:
    """The event time of a call (received) or an update (its status time)."""
    return event.received_at if isinstance(event, Call) else event.at


def summary(candidates: Iterable[Candidate]) -> dict[str, int]:
    """Records by outcome, for the answer and the audit record.

    >>> summary([Candidate(0, b"", None, "k", outcome=Outcome.DUPLICATE)])
    {'accepted': 0, 'duplicate': 1, 'refused': 0}
    """
    counts = dict.fromkeys((o.value for o in Outcome), 0)
    for c in candidates:
        counts[(c.outcome or Outcome.REFUSED).value] += 1
    return counts


def format_prometheus_label(value: str) -> str:
    """A label value safe in the metrics' ``name|a|b`` form and Prometheus text (no ``|``, quote, backslash or line break).

    >>> format_prometheus_label('a|b"c')
    'a_b_c'
    """
    return "".join("_" if ch in '|"\\\n' else ch for ch in value)
