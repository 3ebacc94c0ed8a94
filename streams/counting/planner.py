"""Turn a batch of consumed records into one atomic list of Redis writes (pure).

This is the core of exact counting. The worker, for each batch it takes from
Kafka:

1. reads a :class:`Snapshot` of what it needs from Redis (the last applied
   offset and watermark of each partition in the batch, the state of the calls
   the batch mentions, their pending updates);
2. calls :func:`plan_batch`, which validates every record, skips those at or
   below the applied offset (a redelivery after a crash), and returns a
   :class:`Plan`: the writes, the new offsets and watermarks, the dead letters;
3. commits the plan with one Redis script that first checks that every
   partition's offset is still the one in the snapshot (compare-and-set), then
   applies all writes and the new offsets together, or nothing.

So a batch is counted once or not at all, whatever crashes or rebalances
happen; a worker that lost the race re-reads and re-plans.

Call state is keyed by partition: ``calls`` and ``incident-updates`` are
co-partitioned, so a call and its updates share a partition number, and the
offset check protects the state of every call in it.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import h3

from detectors.types import DETECTION_RESOLUTION
from streams.counting.keys import ALL, Keys
from streams.counting.rolling import cells_for, hour_of, minute_of, rt_bin
from streams.ingest.schema import Call, Extent, IncidentUpdate, InvalidRecord, Parsed, Reason, Status, parse_event

CALL = "call"
UPDATE = "update"
KINDS = (CALL, UPDATE)

_ALL = "|" + ALL

OPEN = "open"
CLOSED = "closed"
#: Status of a call that never closed and timed out (see ``open_timeout_s``).
STALE = "stale"


@dataclass(frozen=True)
class Incoming:
    """One consumed Kafka record: which topic kind it came from, where, and its bytes (None: a null value, a tombstone)."""

    kind: str
    partition: int
    offset: int
    value: bytes | None


@dataclass(frozen=True)
class CallState:
    """What the worker remembers about a call (no coordinates, no caller data)."""

    cells: tuple[str, ...]
    category: str
    received: float
    dispatched: float | None = None
    on_scene: float | None = None
    status: str = OPEN
    travel_done: bool = False

    def to_text(self) -> str:
        """A compact form for Redis: ``cells;category;received;dispatched;on_scene;status;travel_done``.

        The commit script reads the cells (first field) and rewrites the status
        (sixth) when a call times out, so keep those positions.

        >>> st = CallState(("88a", "87a"), "EMS", 10.5, dispatched=70.0)
        >>> st.to_text()
        '88a,87a;EMS;10.5;70.0;;open;'
        >>> CallState.from_text(st.to_text()) == st
        True
        """
        return ";".join(
            (
                ",".join(self.cells),
                self.category,
                repr(self.received),
                "" if self.dispatched is None else repr(self.dispatched),
                "" if self.on_scene is None else repr(self.on_scene),
                self.status,
                "1" if self.travel_done else "",
            )
        )

    @classmethod
    def from_text(cls, text: str) -> CallState:
        cells, category, received, dispatched, on_scene, status, travel = text.split(";")
        return cls(
            cells=tuple(cells.split(",")),
            category=category,
            received=float(received),
            dispatched=float(dispatched) if dispatched else None,
            on_scene=float(on_scene) if on_scene else None,
            status=status,
            travel_done=travel == "1",
        )


@dataclass(frozen=True)
class Snapshot:
    """What :func:`plan_batch` needs to know from Redis. Missing partitions mean "nothing applied yet"."""

    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    watermarks: dict[tuple[str, int], float] = field(default_factory=dict)
    #: Epoch minute below which buckets have expired (None: nothing expired yet).
    horizon: int | None = None
    calls: dict[tuple[int, str], CallState] = field(default_factory=dict)
    #: Updates held for calls not seen yet, as :func:`hold` wrote them.
    pending: dict[tuple[int, str], list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class DeadLetter:
    source: Incoming
    reason: Reason
    detail: str


@dataclass
class Plan:
    """Writes for one batch. ``ops`` is the flat op list the commit script runs (see ``state.py``)."""

    ops: list[str] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    watermarks: dict[tuple[str, int], float] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    metrics: Counter[str] = field(default_factory=Counter)
    #: The accepted calls, for the detectors: ``(partition, offset, event time, res-8 cell, category, priority)``.
    points: list[tuple[int, int, float, str, str, int | None]] = field(default_factory=list)
    #: Streams ``(kind, partition)`` with records still to read in Kafka after this batch, as the
    #: worker saw it: nothing of their partition times out or expires ahead of them (see
    #: :func:`streams.counting.state.expiry_times`).
    catching_up: frozenset[tuple[str, int]] = frozenset()
    applied: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class PlanConfig:
    keys: Keys
    resolutions: tuple[int, ...]
    allowed_lateness_s: float
    #: where calls are accepted: the profile's boundary or WF_JURISDICTION's box (see RedisState)
    jurisdiction: Extent | None = None


Validated = Parsed | InvalidRecord


def parse_batch(batch: list[Incoming], config: PlanConfig, *, now: float) -> list[Validated]:
    """Validate every record of a batch: a :class:`Parsed` or the :class:`InvalidRecord` it raised.

    ``now`` is the wall clock, used only to refuse events from the future.
    """
    out: list[Validated] = []
    for rec in batch:
        if rec.value is None:
            out.append(InvalidRecord(Reason.NOT_JSON, "record has no value (null), expected a JSON object"))
            continue
        try:
            out.append(parse_event(rec.value, now=now, jurisdiction=config.jurisdiction))
        except InvalidRecord as exc:
            out.append(exc)
    return out


def referenced_calls(batch: list[Incoming], parsed: list[Validated]) -> list[tuple[int, str]]:
    """The ``(partition, call id)`` pairs whose state the batch needs, sorted."""
    ids = set()
    for rec, p in zip(batch, parsed, strict=True):
        if isinstance(p, Parsed):
            ids.add((rec.partition, p.event.id if isinstance(p.event, Call) else p.event.call_id))
    return sorted(ids)


def plan_batch(batch: list[Incoming], snapshot: Snapshot, config: PlanConfig, *, now: float, parsed: list[Validated] | None = None) -> Plan:
    """Fold a batch into Redis writes. Pure: same inputs, same plan.

    Records are handled in batch order, which keeps each partition's Kafka
    order. ``parsed`` is :func:`parse_batch`'s result when the caller already
    has it (the worker needs the call ids before it reads the snapshot).
    """
    if parsed is None:
        parsed = parse_batch(batch, config, now=now)
    b = _Builder(snapshot, config)
    for rec, p in zip(batch, parsed, strict=True):
        b.take(rec, p)
    return b.finish()


class _Builder:
    def __init__(self, snapshot: Snapshot, config: PlanConfig) -> None:
        self.snap = snapshot
        self.cfg = config
        self.k = config.keys
        self.plan = Plan()
        self.incr: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.calls: dict[tuple[int, str], CallState | None] = {}
        self.pending: dict[tuple[int, str], list[str]] = {}
        self.new_calls: list[tuple[int, str, float]] = []
        self.closed: list[tuple[int, str]] = []
        self.minutes: set[int] = set()
        self.hours: set[int] = set()
        self.pend_times: dict[tuple[int, str], float] = {}
        #: where the detectors' resolution sits among the counted ones (None: not counted, computed per call)
        res = config.resolutions
        self.detect_index = res.index(DETECTION_RESOLUTION) if DETECTION_RESOLUTION in res else None

    # -- per record ---------------------------------------------------------

    def take(self, rec: Incoming, parsed: Validated) -> None:
        tp = (rec.kind, rec.partition)
        last = self.plan.offsets.get(tp, self.snap.offsets.get(tp, -1))
        if rec.offset <= last:
            self.plan.skipped += 1
            self.plan.metrics["redelivered_skipped_total"] += 1
            return
        self.plan.offsets[tp] = rec.offset
        self.plan.applied += 1
        try:
            if isinstance(parsed, InvalidRecord):
                raise parsed
            event = parsed.event
            if event.type != rec.kind:
                raise InvalidRecord(Reason.WRONG_TOPIC, f"a {event.type!r} record arrived on the {rec.kind} topic")
            t = event.received_at if isinstance(event, Call) else event.at
            self._check_time(tp, t)
        except InvalidRecord as exc:
            self.plan.dead_letters.append(DeadLetter(rec, exc.reason, exc.detail))
            self.plan.metrics[f"deadletter_total|{exc.reason.value}"] += 1
            return
        if parsed.dropped_fields:
            self.plan.metrics["pii_fields_dropped_total"] += len(parsed.dropped_fields)
        if isinstance(event, Call):
            if self._state(rec.partition, event.id) is not None:
                self.plan.dead_letters.append(DeadLetter(rec, Reason.DUPLICATE_ID, f"call id {event.id!r} was already counted"))
                self.plan.metrics[f"deadletter_total|{Reason.DUPLICATE_ID.value}"] += 1
                return
            cells = self._add_call(rec.partition, event)
            i = self.detect_index
            cell8 = cells[i] if i is not None else h3.latlng_to_cell(event.lat, event.lng, DETECTION_RESOLUTION)
            self.plan.points.append((rec.partition, rec.offset, event.received_at, cell8, event.category.value, event.priority))
        else:
            self._add_update(rec.partition, event)
        self.plan.metrics[f"events_total|{rec.kind}"] += 1

    def _check_time(self, tp: tuple[str, int], t: float) -> None:
        wm = self.plan.watermarks.get(tp, self.snap.watermarks.get(tp))
        if wm is not None and t < wm - self.cfg.allowed_lateness_s:
            raise InvalidRecord(
                Reason.TOO_LATE,
                f"event time is {wm - t:.0f} s behind its partition's watermark; "
                f"the allowed lateness is {self.cfg.allowed_lateness_s:.0f} s",
            )
        if self.snap.horizon is not None and minute_of(t) < self.snap.horizon:
            raise InvalidRecord(Reason.TOO_LATE, "event time is older than the retention: its bucket has already expired")
        if wm is None or t > wm:
            self.plan.watermarks[tp] = t

    # -- calls and updates --------------------------------------------------

    def _state(self, partition: int, call_id: str) -> CallState | None:
        key = (partition, call_id)
        if key not in self.calls:
            self.calls[key] = self.snap.calls.get(key)
        return self.calls[key]

    def _add_call(self, partition: int, call: Call) -> tuple[str, ...]:
        cells = cells_for(call.lat, call.lng, self.cfg.resolutions)
        minute = minute_of(call.received_at)
        bucket = self.k.bucket(minute)
        self.minutes.add(minute)
        incr, open_key, cat = self.incr, self.k.open, "|" + call.category.value
        for cell in cells:
            incr[(bucket, cell + cat)] += 1
            incr[(bucket, cell + _ALL)] += 1
            incr[(open_key, cell)] += 1
        key = (partition, call.id)
        self.calls[key] = CallState(cells=cells, category=call.category.value, received=call.received_at)
        self.new_calls.append((partition, call.id, call.received_at))
        waiting = self.pending.get(key, self.snap.pending.get(key, []))
        if waiting:
            self.pending[key] = []
            for upd in sorted((unhold(call.id, text) for text in waiting), key=lambda u: u.at):
                self._apply_update(partition, upd)
        return cells

    def _add_update(self, partition: int, upd: IncidentUpdate) -> None:
        key = (partition, upd.call_id)
        if self._state(partition, upd.call_id) is None:
            # The call has not been seen yet (the two topics are consumed
            # independently): keep the update until it arrives.
            self.pending.setdefault(key, list(self.snap.pending.get(key, []))).append(hold(upd))
            self.pend_times[key] = upd.at
            self.plan.metrics["updates_pending_total"] += 1
            return
        self._apply_update(partition, upd)

    def _apply_update(self, partition: int, upd: IncidentUpdate) -> None:
        key = (partition, upd.call_id)
        st = self.calls[key]
        assert st is not None
        if upd.status is Status.DISPATCHED and st.dispatched is None:
            st = replace(st, dispatched=upd.at)
            self._sample("dispatch", st, upd.at - st.received, upd.at)
        elif upd.status is Status.ON_SCENE and st.on_scene is None:
            st = replace(st, on_scene=upd.at)
        elif upd.status is Status.CLOSED and st.status == OPEN:
            st = replace(st, status=CLOSED)
            for cell in st.cells:
                self.incr[(self.k.open, cell)] -= 1
            self.closed.append(key)
        dispatched, on_scene = st.dispatched, st.on_scene  # locals: mypy narrows them, not the fields of a replaced st
        if dispatched is not None and on_scene is not None and not st.travel_done:
            st = replace(st, travel_done=True)
            self._sample("travel", st, on_scene - dispatched, on_scene)
        self.calls[key] = st

    def _sample(self, kind: str, st: CallState, seconds: float, at: float) -> None:
        if seconds < 0:
            self.plan.metrics[f"response_time_negative_total|{kind}"] += 1
            return
        hour = hour_of(at)
        self.hours.add(hour)
        rt = self.k.rt(hour)
        area = st.cells[-1]
        self.incr[(rt, f"{kind}|{area}|n")] += 1
        self.incr[(rt, f"{kind}|{area}|sum")] += round(seconds)
        self.incr[(rt, f"{kind}|{area}|{rt_bin(seconds)}")] += 1

    # -- output -------------------------------------------------------------

    def finish(self) -> Plan:
        ops = self.plan.ops
        by_key: defaultdict[str, list[str]] = defaultdict(list)
        for (key, fld), n in self.incr.items():
            if n:
                by_key[key] += [fld, str(n)]
        for name, n in sorted(self.plan.metrics.items()):
            by_key[self.k.metrics] += [name, str(n)]
        for key, pairs in by_key.items():
            ops += ["B", key, str(len(pairs) // 2), *pairs]
        for minute in sorted(self.minutes):
            ops += ["Z", self.k.buckets, str(minute), str(minute)]
        for hour in sorted(self.hours):
            ops += ["Z", self.k.rt_hours, str(hour), str(hour)]
        for (partition, call_id), st in self.calls.items():
            if st is not None and st != self.snap.calls.get((partition, call_id)):
                ops += ["H", self.k.calls(partition), call_id, st.to_text()]
        for partition, call_id, received in self.new_calls:
            ops += ["Z", self.k.callq(partition), repr(received), call_id]
            if self.calls[(partition, call_id)].status == OPEN:  # type: ignore[union-attr]  # a new call always has its state
                ops += ["Z", self.k.openq(partition), repr(received), call_id]
        for partition, call_id in self.closed:
            ops += ["R", self.k.openq(partition), call_id]
        for (partition, call_id), waiting in self.pending.items():
            if waiting:
                ops += ["H", self.k.pending(partition), call_id, "\n".join(waiting)]
                ops += ["Z", self.k.pendq(partition), repr(self.pend_times.get((partition, call_id), 0.0)), call_id]
            else:
                ops += ["X", self.k.pending(partition), call_id, "R", self.k.pendq(partition), call_id]
        return self.plan


def hold(upd: IncidentUpdate) -> str:
    """An update kept for a call not seen yet: what applying it needs, ``status|at``.

    (Unit and source are not kept: the counts and response times do not use them.)

    >>> hold(IncidentUpdate("A1", Status.ON_SCENE, 1453564931.5, "M12", "cad"))
    'on_scene|1453564931.5'
    """
    return f"{upd.status.value}|{upd.at!r}"


def unhold(call_id: str, text: str) -> IncidentUpdate:
    """The update :func:`hold` kept for ``call_id``; a JSON line, as earlier versions held them, is read too.

    >>> unhold("A1", "closed|1453564931.0").status
    <Status.CLOSED: 'closed'>
    """
    if text.startswith("{"):
        return parse_event(text.encode(), now=float("inf")).event  # type: ignore[return-value]  # a held line is an update
    status, _, at = text.partition("|")
    return IncidentUpdate(call_id, Status(status), float(at), None, "")


def decode_ops(ops: list[str]) -> Iterator[tuple[str, ...]]:
    """Split a plan's flat op list into ``(op, args...)`` tuples, ``B`` expanded to one ``I`` per field.

    The commit script reads the same layout; this is for inspection and tests.

    >>> list(decode_ops(["B", "k", "2", "a", "1", "b", "-1", "X", "h", "f"]))
    [('I', 'k', 'a', '1'), ('I', 'k', 'b', '-1'), ('X', 'h', 'f')]
    """
    i = 0
    while i < len(ops):
        op = ops[i]
        if op == "B":
            key, n = ops[i + 1], int(ops[i + 2])
            for f in range(i + 3, i + 3 + 2 * n, 2):
                yield ("I", key, ops[f], ops[f + 1])
            i += 3 + 2 * n
        else:
            width = _OP_WIDTH[op]
            yield tuple(ops[i : i + width])
            i += width


_OP_WIDTH = {"H": 4, "X": 3, "Z": 4, "R": 3}

#: Most original bytes a dead letter keeps. Base64 adds a third, and the dead letter must fit in one
#: Kafka message (1 MB by default: broker ``message.max.bytes``, producer ``max_request_size``) even
#: when the refused record nearly filled one; otherwise publishing it fails and the batch never commits.
MAX_DEADLETTER_ORIGINAL_BYTES = 64 * 1024


def encode_deadletter(dl: DeadLetter, topic: str, *, at: float) -> bytes:
    """The dead-letter record: the original bytes (base64), the reason, and where they came from.

    ``topic``/``partition``/``offset`` identify the record, so a consumer of the
    dead-letter topic can drop the copy a redelivery after a crash may add. The
    original is null for a record without a value and keeps only the first
    :data:`MAX_DEADLETTER_ORIGINAL_BYTES` of a longer one (``original_truncated``).

    >>> dl = DeadLetter(Incoming("call", 2, 17, b"{oops"), Reason.NOT_JSON, "record is not valid UTF-8 JSON")
    >>> json.loads(encode_deadletter(dl, "wf.calls", at=0))["original_b64"]
    'e29vcHM='
    """
    import base64

    value = dl.source.value
    return json.dumps(
        {
            "v": 1,
            "reason": dl.reason.value,
            "detail": dl.detail,
            "topic": topic,
            "partition": dl.source.partition,
            "offset": dl.source.offset,
            "refused_at": at,
            "original_b64": None if value is None else base64.b64encode(value[:MAX_DEADLETTER_ORIGINAL_BYTES]).decode(),
            "original_truncated": value is not None and len(value) > MAX_DEADLETTER_ORIGINAL_BYTES,
        },
        separators=(",", ":"),
    ).encode()
