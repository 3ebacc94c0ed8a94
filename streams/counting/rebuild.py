"""Rebuild the counts in Redis from Kafka's retained log: ``python -m streams.counting.rebuild``.

Redis holds the counts, the call state and, per ingest partition, the last
Kafka offset applied (``P:off:{kind}:{partition}``). Kafka keeps the records
themselves for ``INGEST_RETENTION_MS`` (8 days). When Redis loses its data (a
restart without persistence, a flush, a failover to an empty replica), the
counts can be made again by reading the retained records and applying them
through the same planner and commit script as the worker: a record at or below
a partition's applied offset is skipped, so a rebuild is idempotent and may race
a running worker (the offset compare-and-set lets exactly one of them count each
record).

A loss shows as a gap: a consumer is about to apply offset ``n`` of a partition
while Redis says nothing after offset ``a < n - 1`` was applied (or nothing at
all, and the log starts before ``n``). Kafka's committed offsets never pass
Redis's applied ones (the worker acknowledges a batch only after its commit),
so a gap cannot happen while Redis keeps its data. The worker checks every
batch (:func:`find_gaps`, through :meth:`streams.counting.state.RedisState.apply`'s
``check_snapshot``) and, on a gap, rebuilds the missing ranges in-process with
:func:`apply_spans` before it counts the batch.

What a rebuild does not redo: it publishes no detector input and no dead
letters (they were published when the records were first counted). By default
the command stops at the counting consumer group's committed offsets, so that
records no worker has handled yet are left to the worker, which publishes them;
``--to end`` counts everything now (for a deployment with no worker to run).

Pure part: :class:`Span`, :func:`first_offsets`, :func:`find_gaps`,
:func:`rebuild_spans`, :class:`RebuildSummary`. Adapter part: :class:`KafkaLog`
(offsets), :func:`apply_spans` (read and commit), :func:`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from streams.counting.planner import CALL, KINDS, UPDATE, Incoming, Plan
from streams.ingest.replay import parse_when
from streams.runtime.settings import Settings, SettingsError, load_settings
from streams.topics import CALLS, INCIDENT_UPDATES, topic_name

if TYPE_CHECKING:
    from streams.counting.state import RedisState

log = logging.getLogger(__name__)

#: A topic kind and partition: ``("call", 2)``.
TP = tuple[str, int]

#: Seconds a rebuild waits for Kafka to hand over any record before it gives up.
STALL_S = 60.0


class RebuildError(RuntimeError):
    """A rebuild cannot run or did not finish; the message says why and what to do."""


class RedisDataLost(Exception):
    """Redis no longer holds records that come before a batch (``gaps``: what is missing); raised before anything is written."""

    def __init__(self, gaps: dict[TP, Span]) -> None:
        super().__init__(f"Redis lost applied records: {describe(gaps)}")
        self.gaps = gaps


@dataclass(frozen=True)
class Span:
    """Offsets ``[start, stop)`` of one partition to read again; ``lost`` records before ``start`` that Kafka no longer has."""

    start: int
    stop: int
    lost: int = 0

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def first_offsets(batch: Iterable[Incoming]) -> dict[TP, int]:
    """The lowest offset of each partition in a batch.

    >>> first_offsets([Incoming("call", 0, 7, b""), Incoming("call", 0, 8, b""), Incoming("update", 0, 3, b"")])
    {('call', 0): 7, ('update', 0): 3}
    """
    out: dict[TP, int] = {}
    for rec in batch:
        tp = (rec.kind, rec.partition)
        if tp not in out or rec.offset < out[tp]:
            out[tp] = rec.offset
    return out


def offsets_after(batch: Iterable[Incoming]) -> dict[TP, int]:
    """One past the highest offset of each partition in a batch (where reading goes on after it).

    >>> offsets_after([Incoming("call", 0, 7, b""), Incoming("call", 0, 8, b""), Incoming("update", 0, 3, b"")])
    {('call', 0): 9, ('update', 0): 4}
    """
    out: dict[TP, int] = {}
    for rec in batch:
        tp = (rec.kind, rec.partition)
        if rec.offset >= out.get(tp, 0):
            out[tp] = rec.offset + 1
    return out


def find_gaps(next_offsets: Mapping[TP, int], applied: Mapping[TP, int], log_start: Mapping[TP, int]) -> dict[TP, Span]:
    """Partitions whose next record to apply does not follow what Redis says was applied: the records in between are missing.

    ``next_offsets``: per partition, the offset about to be applied (a batch's
    first) or one past the last one this process applied. ``applied``: Redis's
    applied offsets (a partition absent: none). ``log_start``: Kafka's first
    retained offset per partition (absent: 0). The span to read again is
    ``[applied + 1 or log start, next)``, its start raised to the log start
    (``lost`` counts the records retention deleted before they were applied).

    >>> find_gaps({("call", 0): 500, ("call", 1): 41}, {("call", 1): 40}, {})
    {('call', 0): Span(start=0, stop=500, lost=0)}
    >>> find_gaps({("call", 0): 500}, {("call", 0): 99}, {("call", 0): 0})
    {('call', 0): Span(start=100, stop=500, lost=0)}
    >>> find_gaps({("call", 0): 500}, {}, {("call", 0): 500})  # retention trimmed the log: nothing is missing
    {}
    >>> find_gaps({("call", 0): 500}, {("call", 0): 10}, {("call", 0): 300})
    {('call', 0): Span(start=300, stop=500, lost=289)}
    """
    gaps: dict[TP, Span] = {}
    for tp, nxt in next_offsets.items():
        begin = log_start.get(tp, 0)
        a = applied.get(tp)
        want = a + 1 if a is not None else begin
        if nxt > want:
            start = max(want, begin)
            gaps[tp] = Span(min(start, nxt), nxt, lost=max(0, min(begin, nxt) - want))
    return gaps


def rebuild_spans(
    tps: Iterable[TP],
    applied: Mapping[TP, int],
    log_start: Mapping[TP, int],
    stop: Mapping[TP, int],
    since: Mapping[TP, int] | None = None,
) -> dict[TP, Span]:
    """What the command reads: per partition, from after the applied offset (or the log start, or ``since``) to ``stop``.

    Records at or below the applied offset would be skipped anyway, so they are
    not read. Partitions with nothing to read are left out.

    >>> rebuild_spans([("call", 0), ("call", 1)], {("call", 1): 9}, {}, {("call", 0): 5, ("call", 1): 10})
    {('call', 0): Span(start=0, stop=5, lost=0)}
    >>> rebuild_spans([("call", 0)], {}, {("call", 0): 2}, {("call", 0): 9}, since={("call", 0): 4})
    {('call', 0): Span(start=4, stop=9, lost=0)}
    """
    out: dict[TP, Span] = {}
    for tp in tps:
        begin = log_start.get(tp, 0)
        a = applied.get(tp)
        start = max(begin, a + 1 if a is not None else begin, (since or {}).get(tp, begin))
        lost = max(0, begin - (a + 1)) if a is not None else 0
        end = stop.get(tp, start)
        if end > start or lost:
            out[tp] = Span(start, max(start, end), lost)
    return out


@dataclass
class RebuildSummary:
    """What a rebuild read and applied."""

    spans: dict[TP, Span] = field(default_factory=dict)
    read: int = 0
    applied: int = 0
    skipped: int = 0
    calls: int = 0
    updates: int = 0
    dead_letters: int = 0
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return sum(s.lost for s in self.spans.values())

    def text(self) -> str:
        """One line for people.

        >>> print(RebuildSummary({("call", 0): Span(0, 10)}, read=10, applied=10, calls=9, dead_letters=1, seconds=0.5).text())
        rebuilt 1 partition(s): read 10 records in 0.5 s (20 records/s), applied 10 (9 calls, 0 updates, 1 dead letters), 0 skipped
        """
        if not self.spans:
            return "nothing to rebuild: Redis holds every record up to where the rebuild stops"
        rate = self.read / self.seconds if self.seconds > 0 else 0.0
        line = (
            f"rebuilt {len(self.spans)} partition(s): read {self.read} records in {self.seconds:.1f} s ({rate:.0f} records/s), "
            f"applied {self.applied} ({self.calls} calls, {self.updates} updates, {self.dead_letters} dead letters), "
            f"{self.skipped} skipped"
        )
        if self.lost:
            line += f"; {self.lost} records were deleted by Kafka's retention before they were counted and cannot be rebuilt"
        return line


def describe(spans: Mapping[TP, Span]) -> str:
    """``call[0] 0..499, update[0] 0..511`` (inclusive ranges, for logs).

    >>> describe({("call", 0): Span(0, 500), ("update", 2): Span(7, 7, lost=3)})
    'call[0] 0..499, update[2] none (3 lost to retention)'
    """
    parts = []
    for (kind, p), s in sorted(spans.items()):
        text = f"{kind}[{p}] {s.start}..{s.stop - 1}" if len(s) else f"{kind}[{p}] none"
        parts.append(text + (f" ({s.lost} lost to retention)" if s.lost else ""))
    return ", ".join(parts)


# -- adapters: Kafka offsets, reading and applying ------------------------------------


def _topics(settings: Settings) -> dict[str, str]:
    return {CALL: topic_name(settings.topic_prefix, CALLS), UPDATE: topic_name(settings.topic_prefix, INCIDENT_UPDATES)}


def counting_groups(settings: Settings) -> list[str]:
    """The consumer groups a counting worker may use (see :func:`streams.runtime.app.create_app`)."""
    return [settings.app_id, f"{settings.app_id}-count"]


class KafkaLog:
    """Offsets of the ingest topics, through one aiokafka consumer (no group) and admin client. Use as ``async with``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = _topics(settings)
        self.kinds = {v: k for k, v in self.topics.items()}
        #: see :meth:`read`
        self.unread: frozenset[TP] = frozenset()
        self._consumer: Any = None  # an aiokafka AIOKafkaConsumer once entered (aiokafka ships no types)

    async def __aenter__(self) -> KafkaLog:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError

        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False, request_timeout_ms=15000
        )
        try:
            await self._consumer.start()
        except KafkaError as exc:
            raise RebuildError(
                f"Kafka at {self.settings.kafka_bootstrap} does not answer ({exc!r}); start it with: python -m infra.stack up"
            ) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def _ask(self, request: Awaitable, what: str):
        from aiokafka.errors import KafkaError

        try:
            return await request
        except KafkaError as exc:
            raise RebuildError(f"Kafka at {self.settings.kafka_bootstrap} did not give {what} ({exc!r})") from exc

    def _tp(self, tp: TP):
        from aiokafka import TopicPartition

        return TopicPartition(self.topics[tp[0]], tp[1])

    async def missing_topics(self) -> list[str]:
        """The ingest topics the broker does not have."""
        existing = await self._ask(self._consumer.topics(), "the topics")
        return [t for t in self.topics.values() if t not in existing]

    def all_tps(self) -> list[TP]:
        return [(kind, p) for kind in KINDS for p in range(self.settings.partitions)]

    async def begin_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        tps = list(tps)
        res = await self._ask(self._consumer.beginning_offsets([self._tp(tp) for tp in tps]), "the first offsets")
        return {tp: res[self._tp(tp)] for tp in tps}

    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        tps = list(tps)
        res = await self._ask(self._consumer.end_offsets([self._tp(tp) for tp in tps]), "the end offsets")
        return {tp: res[self._tp(tp)] for tp in tps}

    async def offsets_for_time(self, tps: Iterable[TP], when: float) -> dict[TP, int]:
        """The first offset of each partition whose record was written at or after ``when`` (epoch s); the end if none."""
        tps = list(tps)
        found = await self._ask(self._consumer.offsets_for_times({self._tp(tp): int(when * 1000) for tp in tps}), "offsets by time")
        ends = await self.end_offsets(tps)
        return {tp: found[self._tp(tp)].offset if found.get(self._tp(tp)) is not None else ends[tp] for tp in tps}

    async def committed(self, groups: Iterable[str]) -> dict[TP, int]:
        """The highest offset any of ``groups`` committed per partition (the next record it would read)."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap, request_timeout_ms=15000)
        await self._ask(admin.start(), "an admin connection")
        out: dict[TP, int] = {}
        try:
            for group in groups:
                for ktp, meta in (await self._ask(admin.list_consumer_group_offsets(group), f"group {group}'s offsets")).items():
                    kind = self.kinds.get(ktp.topic)
                    if kind is not None and meta.offset >= 0:
                        out[(kind, ktp.partition)] = max(out.get((kind, ktp.partition), 0), meta.offset)
        finally:
            await admin.close()
        return out

    async def read(self, spans: Mapping[TP, Span], batch_size: int) -> AsyncIterator[list[Incoming]]:
        """Batches of the records in ``spans``, each partition in Kafka order; raises :class:`RebuildError` if Kafka stalls.

        While a batch is being used, :attr:`unread` holds the partitions with
        records of their span still to read after it.
        """
        from aiokafka import AIOKafkaConsumer

        todo = {tp: s for tp, s in spans.items() if len(s)}
        if not todo:
            return
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=batch_size,
        )
        await consumer.start()
        try:
            by_ktp = {self._tp(tp): tp for tp in todo}
            consumer.assign(list(by_ktp))
            for ktp, tp in by_ktp.items():
                consumer.seek(ktp, todo[tp].start)
            last_data = time.monotonic()
            while by_ktp:
                got = await consumer.getmany(timeout_ms=500, max_records=batch_size)
                batch: list[Incoming] = []
                for ktp, msgs in got.items():
                    got_tp = by_ktp.get(ktp)  # not `tp`: that name is a TP (never None) in the loops around this one
                    if got_tp is None:
                        continue
                    batch += [Incoming(got_tp[0], got_tp[1], m.offset, m.value) for m in msgs if m.offset < todo[got_tp].stop]
                for ktp, tp in list(by_ktp.items()):
                    if await consumer.position(ktp) >= todo[tp].stop:
                        del by_ktp[ktp]
                        consumer.pause(ktp)
                if batch or got:
                    last_data = time.monotonic()
                    if batch:
                        self.unread = frozenset(by_ktp.values())
                        yield batch
                elif time.monotonic() - last_data > STALL_S:
                    left = describe({tp: todo[tp] for tp in by_ktp.values()})
                    raise RebuildError(f"Kafka handed over no record for {STALL_S:.0f} s; still to read: {left}")
        finally:
            await consumer.stop()


async def apply_spans(
    state: RedisState,
    kl: KafkaLog,
    spans: Mapping[TP, Span],
    *,
    on_batch: Callable[[int], None] | None = None,
    publish: Callable[[Plan], Awaitable[None]] | None = None,
    publish_from: Mapping[TP, int] | None = None,
) -> RebuildSummary:
    """Read ``spans`` from Kafka and commit them through :meth:`RedisState.apply`; ``on_batch(n)`` after each batch.

    Nothing is published, except, when ``publish`` is given, the dead letters
    and detector input of records at or after ``publish_from`` (per partition):
    records that were never counted, which the worker finds when a batch it
    was given failed and was not given again.
    """
    summary = RebuildSummary(spans=dict(spans))
    started = time.monotonic()
    before_commit = None
    if publish is not None and publish_from:
        before_commit = _publisher(publish, publish_from)
    async for batch in kl.read(spans, state.settings.batch_size):
        # a partition's calls may be read far ahead of its updates: nothing times out ahead of what is left
        result = await state.apply(batch, before_commit, catching_up=kl.unread)
        plan = result.plan
        summary.read += len(batch)
        summary.applied += plan.applied
        summary.skipped += plan.skipped
        summary.calls += plan.metrics.get(f"events_total|{CALL}", 0)
        summary.updates += plan.metrics.get(f"events_total|{UPDATE}", 0)
        summary.dead_letters += len(plan.dead_letters)
        if on_batch is not None:
            on_batch(len(batch))
    summary.seconds = time.monotonic() - started
    return summary


def _publisher(publish: Callable[[Plan], Awaitable[None]], publish_from: Mapping[TP, int]) -> Callable[[Plan], Awaitable[None]]:
    async def before_commit(plan: Plan) -> None:
        fresh = unpublished(plan, publish_from)
        if fresh.dead_letters or fresh.points:
            await publish(fresh)

    return before_commit


def unpublished(plan: Plan, publish_from: Mapping[TP, int]) -> Plan:
    """``plan`` with only the dead letters and detector points of records at or after ``publish_from`` (absent: none).

    >>> from streams.counting.planner import DeadLetter
    >>> from streams.ingest.schema import Reason
    >>> dl = DeadLetter(Incoming("call", 0, 4, b"x"), Reason.NOT_JSON, "")
    >>> plan = Plan(dead_letters=[dl], points=[(0, 3, 0.0, "c", "EMS", None), (0, 5, 0.0, "c", "EMS", None)])
    >>> fresh = unpublished(plan, {("call", 0): 5})
    >>> fresh.dead_letters, [p[1] for p in fresh.points]
    ([], [5])
    """
    never = float("inf")
    return replace(
        plan,
        dead_letters=[d for d in plan.dead_letters if d.source.offset >= publish_from.get((d.source.kind, d.source.partition), never)],
        points=[p for p in plan.points if p[1] >= publish_from.get((CALL, p[0]), never)],
    )


async def rebuild(settings: Settings, *, since: float | None = None, to: str = "committed", progress: bool = True) -> RebuildSummary:
    """The command: rebuild every partition of ``settings``'s topics into its Redis prefix."""
    from redis.exceptions import RedisError
    from tqdm import tqdm

    from streams.counting.state import RedisState, StateError

    state = RedisState.from_settings(settings)
    try:
        try:
            await state.client.ping()
            applied = await state.applied_offsets()
        except RedisError as exc:
            raise RebuildError(f"Redis at {settings.redis_url} does not answer ({exc}); start it with: python -m infra.stack up") from exc
        async with KafkaLog(settings) as kl:
            tps = kl.all_tps()
            missing = await kl.missing_topics()
            if missing:
                raise RebuildError(f"topic(s) {', '.join(missing)} do not exist: is WF_TOPIC_PREFIX={settings.topic_prefix!r} right?")
            begin = await kl.begin_offsets(tps)
            end = await kl.end_offsets(tps)
            stop = end
            if to == "committed":
                committed = await kl.committed(counting_groups(settings))
                stop = {tp: min(end[tp], committed.get(tp, begin[tp])) for tp in tps}
                done = {tp: max(stop[tp], applied[tp] + 1 if tp in applied else begin[tp]) for tp in tps}
                left = sum(max(0, end[tp] - done[tp]) for tp in tps)
                if left:
                    print(
                        f"rebuild: {left} record(s) after the counting group's committed offsets are left to the worker "
                        "(it also publishes their detector input and dead letters); --to end counts them now",
                        file=sys.stderr,
                    )
            since_offsets = await kl.offsets_for_time(tps, since) if since is not None else None
            spans = rebuild_spans(tps, applied, begin, stop, since_offsets)
            total = sum(len(s) for s in spans.values())
            print(f"rebuild: {settings.redis_prefix}: reading {total} record(s): {describe(spans) or 'nothing to do'}", file=sys.stderr)
            bar = tqdm(total=total, unit="rec", desc="rebuild", disable=not progress or not total, file=sys.stderr)
            try:
                return await apply_spans(state, kl, spans, on_batch=bar.update)
            except StateError as exc:
                raise RebuildError(f"Redis failed during the rebuild ({exc}); run the command again: it resumes where it stopped") from exc
            finally:
                bar.close()
    finally:
        await state.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m streams.counting.rebuild",
        description=(
            "Rebuild the Redis counts of this deployment (WF_REDIS_PREFIX) from the calls and incident updates Kafka "
            "still retains (WF_TOPIC_PREFIX), after Redis lost its data. Records already applied are skipped, so it is "
            "safe to run twice or while a worker runs. Kafka's retention (8 days) must cover the 24-hour window and the "
            "open calls, or counts older than the retained log stay missing."
        ),
        epilog=(
            "Settings (broker, Redis, prefixes, partitions, WF_APP_ID for the consumer group) come from WF_* variables; see README. "
            "Exit status: 0 rebuilt, 1 rebuilt but some records were deleted by Kafka's retention before they were counted, "
            "2 could not run (the message says why)."
        ),
    )
    p.add_argument(
        "--since", type=parse_when, default=None, help="read only records written to Kafka at or after this time (ISO 8601; no offset: UTC)"
    )
    p.add_argument(
        "--to",
        choices=("committed", "end"),
        default="committed",
        help="stop at the counting consumer group's committed offsets, leaving the rest to the worker (default), "
        "or at the end of the log (then those records are counted without feeding the detectors)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        summary = asyncio.run(rebuild(settings, since=args.since, to=args.to, progress=not args.no_progress))
    except (RebuildError, SettingsError) as exc:
        print(f"rebuild: {exc}", file=sys.stderr)
        return 2
    print(summary.text())
    return 1 if summary.lost else 0


if __name__ == "__main__":
    sys.exit(main())
