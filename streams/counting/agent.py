"""The counting agent: calls and incident updates from Kafka into exact per-cell, per-minute counts in Redis.

:class:`CountingAgent` is registered by :func:`streams.runtime.app.create_app`
as ``count_calls_and_updates`` (its :meth:`~CountingAgent.count_calls_and_updates`),
with :meth:`~CountingAgent.check_quiet_partitions` on a timer. Records are read
while the previous batch commits (a :class:`~streams.counting.batching.Batcher`
per committer between the stream and the committer); each committer commits
its batches in order through a :class:`~streams.counting.state.RedisState` of
its own (with a plan process, see :mod:`streams.counting.planproc`) and
acknowledges a batch's records to Kafka once the batch is committed.

A batch goes to its committer as soon as Faust's stream has nothing more
buffered (:meth:`~streams.counting.batching.Batcher.ready`), not after a time
limit. Every detector-input message says which calls partitions are caught
up (every record up to the broker's end published on the detector input) and
which are behind (:mod:`streams.counting.caughtup`); a message with that
status alone goes out when a partition catches up without one, and when the
worker's partitions change. The detectors' event-time merge waits for the
partitions behind, not for a silence.

Each batch must follow what Redis says was applied; when it does not, Redis
lost its data, and the records in between are counted again from Kafka's
retained log before the batch (see :mod:`streams.counting.rebuild`). While Redis
cannot be reached, a batch is kept and tried again
(:func:`streams.runtime.retry.until_reachable`); any other failure stops the
worker (it exits, see :class:`streams.runtime.app.CrashExitApp`), since
nothing after a batch may commit before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

import faust
from aiokafka.errors import KafkaError
from faust.types import TP, EventT
from redis.exceptions import RedisError

from streams.counting.batching import Batcher
from streams.counting.caughtup import Published
from streams.counting.planner import CALL, UPDATE, Incoming, Plan, Snapshot, encode_deadletter
from streams.counting.planproc import OffloadedState
from streams.counting.rebuild import (
    KafkaLog,
    RebuildError,
    RedisDataLost,
    Span,
    apply_spans,
    describe,
    find_gaps,
    first_offsets,
    offsets_after,
)
from streams.counting.state import BatchResult, RedisState, StateError, TakeNext
from streams.detection.runner import encode_points
from streams.runtime.retry import until_reachable
from streams.runtime.settings import Settings
from streams.topics import CALLS, DETECTOR_INPUT, INCIDENT_UPDATES, topic_name

log = logging.getLogger(__name__)

#: Seconds between two checks that Redis still holds the offsets of partitions with no new records.
LOSS_CHECK_S = 10.0

#: Seconds between two looks for calls partitions caught up without a batch (at start, after a rebalance): see
#: :mod:`streams.counting.caughtup`. A batch reports its own partitions at once.
STATUS_CHECK_S = 0.2

#: (kind, partition) of a counted stream: ``("call", 3)``.
StreamKey = tuple[str, int]


class CommitterStates:
    """The worker's Redis states: committer ``i`` commits through ``get(i)``; ``get(0)`` is also everyone else's.

    Each is made on first use; a counting worker's have a plan process each
    (``WF_PLAN_PROCESS``). Call :meth:`close` at shutdown.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._held: dict[int, RedisState] = {}

    def get(self, i: int = 0) -> RedisState:
        if i not in self._held:
            kind = OffloadedState if "count" in self.settings.roles and self.settings.plan_process else RedisState
            self._held[i] = kind.from_settings(self.settings)
        return self._held[i]

    async def close(self) -> None:
        while self._held:
            await self._held.popitem()[1].close()


@dataclass
class CountingState:
    """What the counting agent keeps between batches."""

    #: one past the last offset this process counted, per stream: what Redis must still hold
    counted: dict[StreamKey, int] = field(default_factory=dict)
    #: the committer counting each partition, dealt in the order partitions are first seen, never changed:
    #: a partition's records (calls and updates alike: they share the call state) go through one committer, in order
    committer_of: dict[int, int] = field(default_factory=dict)
    #: each committer's lock, held while it commits; a rebuild and the loss check hold all of them
    locks: list[asyncio.Lock] = field(default_factory=list)
    #: the calls partitions' detector input published, and their status last reported to the detectors
    published: Published = field(default_factory=Published)
    #: held while a detector-input message's status is taken and the message sent: the detectors read them in order
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: set after a batch: the reporter looks at once for a partition caught up without a message
    look: asyncio.Event = field(default_factory=asyncio.Event)
    #: with ``WF_STAGE_TIMING``: (calls partition, offset) -> [taken from the stream, batch closed], wall clock
    stamps: dict[tuple[int, int], list[float]] = field(default_factory=dict)


class CountingAgent:
    """Folds calls and incident updates into Redis, batch by batch, exactly once (see the module's text).

    ``app`` is the Faust app (its producer sends the detector input; its
    consumer says how far each partition goes; a failed batch crashes it);
    ``deadletter`` the topic refused records go to.
    """

    def __init__(self, app: faust.App, settings: Settings, states: CommitterStates, deadletter: faust.TopicT) -> None:
        self.app = app
        self.settings = settings
        self.states = states
        self.deadletter = deadletter
        self.calls_topic = topic_name(settings.topic_prefix, CALLS)
        self.updates_topic = topic_name(settings.topic_prefix, INCIDENT_UPDATES)
        self.detector_input_topic = topic_name(settings.topic_prefix, DETECTOR_INPUT)
        self.kinds = {self.calls_topic: CALL, self.updates_topic: UPDATE}
        self.state = CountingState(locks=[asyncio.Lock() for _ in range(settings.committers)])

    # -- the agent --------------------------------------------------------------

    async def count_calls_and_updates(self, stream: faust.StreamT) -> None:
        """Fold calls and incident updates into per-cell, per-minute counts in Redis, batch by batch.

        Each batch must follow what Redis says was applied; when it does not,
        Redis lost its data, and the records in between are counted again from
        Kafka's retained log before the batch (see :mod:`streams.counting.rebuild`).
        Records go on being read while the previous batch commits (a
        :class:`~streams.counting.batching.Batcher` between the stream and the committer),
        and each is acknowledged to Kafka once its batch is committed.
        """
        s, n = self.settings, self.settings.committers
        # Each committer's batcher has room for two batches beyond the one committing and the
        # next (planned during that commit): records come in runs of one partition per fetch, and
        # the agent waiting for room in one batcher would leave the other committers without records.
        room = (4 if n > 1 else 2) * s.batch_size
        batchers: list[Batcher[EventT]] = [Batcher(s.batch_size, s.batch_within_s, max_pending=room) for _ in range(n)]
        committers = [asyncio.ensure_future(self._commit_batches(i, self.states.get(i), stream, batchers[i])) for i in range(n)]
        reporter = asyncio.ensure_future(self._report_caught_up())
        committer_of = self.state.committer_of
        stamps = self.state.stamps if s.stage_timing else None
        events = cast(faust.Stream, stream).noack()  # StreamT does not declare noack (faust-streaming 0.15)
        # the stream's queue of records delivered and not taken yet: when it is empty, the batches waiting may go
        empty = getattr(events.channel, "empty", None)
        calls_topic = self.calls_topic
        try:
            # acknowledged by each committer once its batch is committed
            async for event in events.events():
                msg = event.message
                p = msg.partition
                if stamps is not None and msg.topic == calls_topic:
                    stamps[(p, msg.offset)] = [time.time(), 0.0]
                i = committer_of.get(p)
                if i is None:
                    i = committer_of[p] = len(committer_of) % n
                if committers[i].done():
                    committers[i].result()  # raises what stopped it
                if reporter.done():
                    reporter.result()  # raises what stopped it (it runs as long as the agent)
                if batchers[i].add(event):
                    await batchers[i].room()
                if empty is not None and empty():
                    for batcher in batchers:
                        batcher.ready()
        finally:
            reporter.cancel()
            for committer in committers:
                committer.cancel()

    async def check_quiet_partitions(self) -> None:
        """Notice a loss on partitions with no new records (a batch notices it on the others). Every :data:`LOSS_CHECK_S`."""
        counted = self.state.counted
        if not counted:
            return
        async with self._all_committers():
            st = self.states.get()
            try:
                applied = await st.applied_offsets()
            except RedisError as exc:
                log.warning("could not check the applied offsets (retrying in %.0f s): %s", LOSS_CHECK_S, exc)
                return
            try:
                if await self._missing(counted, applied):
                    await self._count_missing(st, {})
            except (RebuildError, StateError, RedisError, KafkaError) as exc:
                # the next batch or check starts again from what Redis then holds
                log.error("the rebuild after a Redis loss did not finish (retrying in %.0f s): %s", LOSS_CHECK_S, exc)

    # -- committing ---------------------------------------------------------------

    async def _commit_batches(self, i: int, st: RedisState, stream: faust.StreamT, batcher: Batcher[EventT]) -> None:
        """Committer ``i``: commit the batcher's batches in order, acknowledging each batch's records after its commit."""
        # the batch after the one committing, taken from the batcher (when a full one waits)
        # just before that commit, so that the plan process plans it during the commit
        following: list[tuple[list[EventT], list[Incoming]]] = []

        def take_next() -> tuple[list[Incoming], frozenset[StreamKey]] | None:
            events = None if following else batcher.take_full()
            if events is None:
                return None
            self._stamp_closed(events)
            batch = [self._incoming(e) for e in events]
            following.append((events, batch))
            return batch, self._catching_up(batch)

        async def ack(events: list[EventT]) -> None:
            for event in events:
                await stream.ack(event)

        # the acknowledgements of the batch committed last, made while the next one is under way
        acking: asyncio.Future | None = None
        try:
            while True:
                if following:
                    events, batch = following.pop()
                else:
                    events = await batcher.next_batch()
                    self._stamp_closed(events)
                    batch = [self._incoming(e) for e in events]
                result = await self._count_batch(i, st, batch, take_next)
                self._after_batch(batch)
                if result.plan.skipped:
                    log.info("skipped %d records already counted before a restart", result.plan.skipped)
                if acking is not None:
                    await acking
                acking = asyncio.ensure_future(ack(events))
        except Exception as exc:
            # Nothing after this batch may commit before it: stop the worker (it exits, see CrashExitApp).
            log.exception("counting stopped: %r", exc)
            await self.app.crash(exc)
            raise

    async def _count_batch(self, i: int, st: RedisState, batch: list[Incoming], take_next: TakeNext | None = None) -> BatchResult:
        """Committer ``i`` commits one batch, after counting what Redis is missing before it.

        While Redis (or Kafka, for a rebuild) cannot be reached, the batch is
        kept and tried again (:func:`~streams.runtime.retry.until_reachable`).
        """

        async def attempt() -> BatchResult:
            async with self.state.locks[i]:
                behind = self._catching_up(batch)
                try:
                    return await st.apply(
                        batch, self.publish_before_commit, check_snapshot=self._follows_applied(batch), catching_up=behind,
                        take_next=take_next,
                    )  # fmt: skip
                except RedisDataLost:
                    pass
            # the rebuild counts what is missing on every partition: no committer commits meanwhile
            async with self._all_committers():
                behind = self._catching_up(batch)
                await self._count_missing(st, first_offsets(batch))
                # unchecked: a rebuild runs once per gap
                return await st.apply(batch, self.publish_before_commit, catching_up=behind)

        result = await until_reachable(f"committing a batch of {len(batch)} records", attempt)
        counted = self.state.counted
        for tp, after in offsets_after(batch).items():
            counted[tp] = max(counted.get(tp, 0), after)
        return result

    async def publish_before_commit(self, plan: Plan) -> None:
        """Send a plan's dead letters and detector input, awaited to the broker's acknowledgement (before its batch commits).

        So a refused record or a detector input is never lost; a crash in
        between may publish it twice (both carry partition/offset to drop the copy).
        """
        now = time.time()
        futures = []
        for dl in plan.dead_letters:
            topic = self.calls_topic if dl.source.kind == CALL else self.updates_topic
            futures.append(await self.deadletter.send(key=str(dl.source.offset).encode(), value=encode_deadletter(dl, topic, at=now)))
            log.warning("dead letter %s[%d]@%d: %s: %s", topic, dl.source.partition, dl.source.offset, dl.reason.value, dl.detail)
        for fut in futures:
            await fut
        if plan.points:
            calls = {p: last + 1 for (kind, p), last in plan.offsets.items() if kind == CALL}
            await self._send_detector_input(plan.points, calls)

    async def _send_detector_input(self, points: list, offsets: dict[int, int]) -> None:
        """One detector-input message: ``points``, and the calls partitions' status counting ``offsets`` (one past the
        last record of each partition in the message's batch) as published.

        Straight to the Kafka client, awaiting the broker's acknowledgement
        (Faust's buffered send costs a buffer flush cycle per batch here), under
        the send lock: the status is taken just before the send, and the
        detectors read the messages in the order of their status.
        """
        published = self.state.published
        async with self.state.send_lock:
            ends = self._calls_ends()
            status = published.status(ends, offsets)
            timing = self._timing(points) if self.settings.stage_timing else None
            raw = encode_points(points, status=status, timing=timing)
            await self.app.producer.send_and_wait(self.detector_input_topic, None, raw, None, None, None)
            published.advance(offsets)
            published.sent(status)

    def _after_batch(self, batch: list[Incoming]) -> None:
        """After a batch: its calls records need nothing more published; report a partition that is now caught up."""
        calls = {p: after for (kind, p), after in offsets_after(batch).items() if kind == CALL}
        if not calls:
            return
        self.state.published.advance(calls)
        stamps = self.state.stamps
        if stamps:
            for rec in batch:
                if rec.kind == CALL:
                    stamps.pop((rec.partition, rec.offset), None)
        self.state.look.set()  # the reporter sends what is news, beside the committer rather than in its way

    async def _report_if_news(self, *, every: bool = False) -> None:
        """Send a detector-input message with the status alone when a calls partition is caught up that was not reported
        so (``every``: whatever changed, when there is a partition to report)."""
        published = self.state.published
        if not every and not published.news(self._calls_ends()):
            return
        async with self.state.send_lock:
            ends = self._calls_ends()
            if not ends or (not every and not published.news(ends)):
                return  # a message sent meanwhile said it
            status = published.status(ends)
            await self.app.producer.send_and_wait(self.detector_input_topic, None, encode_points([], status=status), None, None, None)
            published.sent(status)

    async def _report_caught_up(self) -> None:
        """After each batch, and every :data:`STATUS_CHECK_S`: report calls partitions caught up without a message of their own.

        When the partitions assigned to this worker change (at start, after a
        rebalance) it first reads what Redis has counted (published before it was
        committed: a partition with nothing new is caught up at once, whoever
        counted it) and reports every partition, those behind too (the worker
        that read one before may have said it caught up).
        """
        assigned: frozenset[int] | None = None
        look = self.state.look
        while True:
            look.clear()  # a batch ending from here on wakes the next look
            try:
                ends = self._calls_ends()
                if frozenset(ends) != assigned:
                    applied = await self.states.get().applied_offsets()
                    self.state.published.seed({p: after for (kind, p), after in applied.items() if kind == CALL})
                    await self._report_if_news(every=True)
                    assigned = frozenset(ends)
                else:
                    await self._report_if_news()
            except (RedisError, StateError, KafkaError) as exc:
                log.warning("could not report the calls partitions caught up (retrying in %.1f s): %s", STATUS_CHECK_S, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(look.wait(), STATUS_CHECK_S)

    def _calls_ends(self) -> dict[int, int | None]:
        """The broker's end of each calls partition assigned to this worker, as of its last fetch (None: not fetched yet)."""
        consumer = self.app.consumer
        ends: dict[int, int | None] = {}
        for tp in consumer.assignment():
            if tp.topic != self.calls_topic:
                continue
            try:
                ends[tp.partition] = consumer.highwater(tp)
            except AssertionError:  # aiokafka: "Partition is not assigned" (a rebalance)
                ends[tp.partition] = None
        return ends

    def _stamp_closed(self, events: list[EventT]) -> None:
        """With ``WF_STAGE_TIMING``: the batch of ``events`` was taken by its committer now."""
        stamps = self.state.stamps
        if not stamps:
            return
        now = time.time()
        for event in events:
            msg = event.message
            if msg.topic == self.calls_topic and (stamp := stamps.get((msg.partition, msg.offset))) is not None:
                stamp[1] = now

    def _timing(self, points: list) -> dict:
        """The counting agent's stamps of ``points`` for the detector-input message (see :mod:`streams.detection.stages`)."""
        stamps = self.state.stamps
        got = [stamps.get((p[0], p[1])) for p in points]
        return {
            "in": [x[0] if x else None for x in got],
            "closed": [x[1] if x and x[1] else None for x in got],
            "sending": time.time(),
        }

    @contextlib.asynccontextmanager
    async def _all_committers(self) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for lock in self.state.locks:  # always in this order
                await stack.enter_async_context(lock)
            yield

    # -- what Redis must hold -------------------------------------------------------

    def _catching_up(self, batch: list[Incoming]) -> frozenset[StreamKey]:
        """The streams of the batch's partitions with records still to read in Kafka after it.

        Nothing of their partition times out or expires ahead of them (see
        :func:`streams.counting.state.expiry_times`). A stream whose end Faust does not
        know yet (not fetched yet, or not assigned any more) counts as one.
        """
        after = offsets_after(batch)
        counted = self.state.counted
        behind = set()
        for p in {p for _, p in after}:
            for topic, kind in self.kinds.items():
                try:
                    end = self.app.consumer.highwater(TP(topic, p))
                except AssertionError:  # aiokafka: "Partition is not assigned" (a rebalance)
                    end = None
                if end is None or end > max(counted.get((kind, p), 0), after.get((kind, p), 0)):
                    behind.add((kind, p))
        return frozenset(behind)

    def _follows_applied(self, batch: list[Incoming]) -> Callable[[Snapshot], Awaitable[None]]:
        """The ``check_snapshot`` of :meth:`RedisState.apply`: raises :class:`RedisDataLost` when Redis lacks records before ``batch``."""
        firsts = first_offsets(batch)

        async def check(snap: Snapshot) -> None:
            gaps = await self._missing(firsts, snap.offsets)
            if gaps:
                raise RedisDataLost(gaps)

        return check

    async def _missing(self, next_offsets: dict[StreamKey, int], applied: dict[StreamKey, int]) -> dict[StreamKey, Span]:
        """The records missing in Redis before ``next_offsets``, as :func:`streams.counting.rebuild.find_gaps` spans.

        Kafka is asked where each log begins only when Redis holds no offset
        for a partition (a first start or a loss); otherwise a log starting at 0
        is assumed, the most that can be missing.
        """
        gaps = find_gaps(next_offsets, applied, {})
        if gaps and any(tp not in applied for tp in gaps):
            async with KafkaLog(self.settings) as kl:
                gaps = find_gaps(next_offsets, applied, await kl.begin_offsets(gaps))
        return gaps

    async def _count_missing(self, st: RedisState, firsts: dict[StreamKey, int]) -> None:
        """Count, from Kafka, the records missing in Redis before ``firsts`` and before what this process counted. Under the lock.

        Two causes: Redis lost what was counted (its data, or part of it), or a
        batch failed (Redis unreachable) and Faust, restarting the agent, went
        on without it. Only the second kind was never published.
        """
        counted = self.state.counted
        next_offsets = {**counted, **firsts}
        async with KafkaLog(self.settings) as kl:
            applied = await st.applied_offsets()
            spans = find_gaps(next_offsets, applied, await kl.begin_offsets(next_offsets))
            if not spans:
                return
            done = {tp: counted.get(tp, next_offsets[tp]) for tp in spans}
            lost = {tp: Span(sp.start, min(sp.stop, done[tp]), sp.lost) for tp, sp in spans.items() if sp.start < done[tp] or sp.lost}
            skipped = {tp: Span(max(sp.start, done[tp]), sp.stop) for tp, sp in spans.items() if sp.stop > done[tp]}
            if lost:
                log.error(
                    "Redis lost its data (restarted without persistence, flushed or failed over?): it no longer holds "
                    "records of %s counted before (%s); rebuilding them from Kafka's retained log "
                    "(python -m streams.counting.rebuild does the same by hand)",
                    self.settings.redis_prefix, describe(lost),
                )  # fmt: skip
            if skipped:
                log.error(
                    "records %s were given to a batch that failed and were not given again; counting them from Kafka's log, "
                    "with their detector input and dead letters",
                    describe(skipped),
                )
            summary = await apply_spans(st, kl, spans, publish=self.publish_before_commit, publish_from=done)
        (log.error if summary.lost else log.warning)("missing records counted: %s", summary.text())

    def _incoming(self, event: EventT) -> Incoming:
        msg = event.message
        return Incoming(self.kinds[msg.topic], msg.partition, msg.offset, msg.value)
