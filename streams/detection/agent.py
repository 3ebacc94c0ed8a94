"""The detection agent: the detectors over the detector input, their alerts, their clock and their checkpoints.

:class:`DetectionAgent` is registered by :func:`streams.runtime.app.create_app`
as ``detect_surges`` (its :meth:`~DetectionAgent.detect_surges`), with
:meth:`~DetectionAgent.keep_detector_clock` on a timer; both drive the one
:class:`~streams.detection.runner.DetectionRunner`, one at a time (a lock).

Alerts are written to the Redis stream as soon as the detectors return them
(de-duplicated there, see :meth:`streams.counting.state.RedisState.append_alerts`)
and sent to the alerts topic. The detectors are checkpointed every
``WF_DETECTOR_CHECKPOINT_S`` seconds, not per message: the pickled state grows
with the calls in the windows (megabytes in a storm). The agent acknowledges its
input to Kafka only up to the checkpoint, so after a crash the messages since the
checkpoint are delivered again and fed to the restored detectors, which make the
same alert records; the stream keeps one copy of each. The alerts topic is
at-least-once: a record may be sent again after a crash, never lost.

A checkpoint is taken under the lock (``pickle.dumps`` of the runner: the copy,
and the only time the agent is held, ``detector_checkpoint_stall_seconds``),
then signed (:mod:`streams.detection.checkpoint`; in a thread, as hashing
releases the GIL) and written to Redis while the agent goes on; its messages
are acknowledged once it is written. A checkpoint read back is unpickled only
if its signature verifies under the worker's key.

The detectors run on the jurisdiction's local clock (the profile's time zone,
``WF_PROFILE``, see :func:`streams.runtime.settings.load_jurisdiction`), and
every alert is named before it is published: the profile's areas holding its
cells (:func:`streams.detection.naming.name_alert`).

The agent also follows the event zones the gateway keeps in Redis: it reads
``P:zones:version`` at most every :data:`ZONES_POLL_S` seconds and, when it
changed, hands the event zones of ``P:zones`` to the detectors (and their
expected extra loads, when a zone states one, to the forecaster).

Forecasts: the runner's forecaster learns the same calls; every 15 minutes of
event time a set is due (:meth:`streams.detection.runner.DetectionRunner.forecasts_due`).
The agent builds it in a thread (:func:`streams.forecasting.issuer.make_set`, a
few hundred milliseconds of a county's areas, beside the detectors rather than
in their way), then writes it to Redis (``P:forecast``, INCR
``P:forecast:version``) and sends it on the forecasts topic (key ``forecast``).
One set is built at a time; a newer one due meanwhile replaces the one waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.types import EventT
from redis.exceptions import RedisError

from detectors.types import Alert
from streams.counting.state import CheckpointFenced, RedisState, RedisWentBack, StateError, unreadable_checkpoint
from streams.detection import checkpoint, stages
from streams.detection.journal import Entry, Journal, encode, follow, fresh_chain
from streams.detection.naming import name_alert
from streams.detection.parts import PARTS
from streams.detection.plain import with_summary
from streams.detection.runner import (
    DetectionRunner,
    decode_message,
    parse_event_loads,
    parse_zones,
    profile_forecaster,
    profile_suite,
)
from streams.detection.shards import worker_runner
from streams.forecasting.build import Places
from streams.forecasting.issuer import ForecastIssuer, Issue, make_set
from streams.jurisdiction import Profile
from streams.runtime.retry import until_reachable
from streams.runtime.settings import Settings, checkpoint_key, load_jurisdiction
from streams.topics import DETECTOR_INPUT, DETECTOR_INPUT_PARTITIONS, topic_name

log = logging.getLogger(__name__)

#: Seconds between two reads of the event zones' version counter.
ZONES_POLL_S = 5.0

#: Seconds between two warnings that the detectors' windows shed calls (while they go on shedding).
SHED_WARN_S = 60.0

#: Calls the stage timing keeps stamps for while the merge holds them (beyond, the oldest are forgotten: late calls).
TIMING_HELD_MAX = 50_000

#: Detector-input messages fed under one hold of the lock, with one write of their alerts, when they wait in the stream.
FEED_MAX = 100
#: Seconds of detector work after which the agent lets the event loop run before the next message of a feed.
YIELD_EVERY_S = 0.05
#: Seconds a re-feed waits for Kafka to hand over the next detector-input message before it gives up (and retries).
REFEED_STALL_S = 60.0
#: Journal entries (ticks of a silent feed, mostly) after which the clock checkpoints though no message waits for one:
#: they are written to Redis with the next record, and a worker taking over replays them all (120: 10 min of 5 s ticks)
TICKS_BEFORE_CHECKPOINT = 120

#: ``read_input(topic, partition, first, last)``: the detector-input messages ``first..last`` (offsets, both included)
#: as Kafka holds them, in batches of ``(offset, value)``; the default reads Kafka (:func:`kafka_input_reader`).
InputReader = Callable[[str, int, int, int], AsyncIterator[list[tuple[int, bytes]]]]


@dataclass
class StageTiming:
    """With ``WF_STAGE_TIMING``: each call's stamps (see :mod:`streams.detection.stages`), appended to ``P:stage-timing``."""

    #: (event time, cell, category) -> the stamps of a call fed and not released yet
    held: dict[tuple[float, str, str], dict[str, float | None]] = field(default_factory=dict)
    #: records of calls released, their alerts not yet in Redis
    releasing: list[dict[str, float | None]] = field(default_factory=list)
    #: complete records not written to Redis yet (JSON)
    ready: list[str] = field(default_factory=list)
    writing: asyncio.Task[None] | None = None

    def arrived(self, raw: bytes, got: float, fed: float) -> None:
        """A detector-input message received at ``got`` and fed at ``fed``: its calls' stamps so far."""
        msg = decode_message(raw)
        timing = msg.timing or {}
        ins, closed = timing.get("in") or [], timing.get("closed") or []
        for i, (p, o, t, cell, category, _) in enumerate(msg.points):
            self.held[(t, cell, category)] = {
                "t": t, "p": p, "o": o, "in": ins[i] if i < len(ins) else None, "closed": closed[i] if i < len(closed) else None,
                "sending": timing.get("sending"), "got": got, "fed": fed,
            }  # fmt: skip
        while len(self.held) > TIMING_HELD_MAX:
            del self.held[next(iter(self.held))]

    def released(self, runner: DetectionRunner, out: float) -> None:
        """The calls the runner ran since the last call were released at ``out`` (then call :meth:`done`)."""
        points = runner.trace or []
        runner.trace = []
        for point in points:
            record = self.held.pop((point.t, point.cell, point.category), None)
            if record is not None:
                record["out"] = out
                self.releasing.append(record)

    def done(self, done: float) -> None:
        """The alerts of the calls released since the last call were in Redis at ``done``."""
        for record in self.releasing:
            record["done"] = done
            self.ready.append(json.dumps(record, separators=(",", ":")))
        self.releasing.clear()

    def flush(self, redis: RedisState) -> None:
        """Append the records ready to the Redis list, in a task (one at a time; a failure is logged and they are dropped)."""
        if not self.ready or (self.writing is not None and not self.writing.done()):
            return
        records, self.ready = self.ready, []
        self.writing = asyncio.ensure_future(self._append(redis, records))

    @staticmethod
    async def _append(redis: RedisState, records: list[str]) -> None:
        key = f"{redis.keys.prefix}:stage-timing"
        try:
            pipe = redis.client.pipeline(transaction=False)
            pipe.rpush(key, *records)
            pipe.ltrim(key, -stages.KEEP, -1)
            await pipe.execute()
        except RedisError as exc:
            log.warning("%d stage timing records not written: %s", len(records), exc)


@dataclass
class ZonesRead:
    """The event zones handed to the detectors so far."""

    #: whether the zones were read at least once
    read: bool = False
    #: the zones' version counter when they were read (None: no zone yet)
    version: int | None = None
    #: monotonic time of the next look at the counter
    next_poll: float = 0.0


@dataclass
class CheckpointFigures:
    """How the detectors' checkpoints went, since the worker started (for ``/metrics``)."""

    #: checkpoints written
    written: int = 0
    #: seconds the last one took, from its snapshot to its write in Redis
    last_seconds: float = 0.0
    #: seconds the agent was held for the last snapshot, and for all of them
    last_stall_seconds: float = 0.0
    stall_seconds: float = 0.0
    #: size of the last snapshot (the pickled detectors), bytes
    last_bytes: int = 0

    def metrics(self) -> dict[str, float]:
        """As ``/metrics`` counters (names as in :mod:`streams.runtime.metrics`).

        >>> CheckpointFigures(written=2, last_seconds=0.25, last_stall_seconds=0.05, stall_seconds=0.1, last_bytes=4096).metrics()
        ... # doctest: +NORMALIZE_WHITESPACE
        {'detector_checkpoints_total': 2, 'detector_checkpoint_seconds': 0.25, 'detector_checkpoint_stall_seconds': 0.05,
         'detector_checkpoint_stall_seconds_total': 0.1, 'detector_checkpoint_bytes': 4096}
        """
        return {
            "detector_checkpoints_total": self.written,
            "detector_checkpoint_seconds": round(self.last_seconds, 4),
            "detector_checkpoint_stall_seconds": round(self.last_stall_seconds, 4),
            "detector_checkpoint_stall_seconds_total": round(self.stall_seconds, 4),
            "detector_checkpoint_bytes": self.last_bytes,
        }


@dataclass
class RefeedFigures:
    """The re-feeds after Redis went back under the detection, and at a takeover of another worker's journal, since the
    worker started (for ``/metrics``)."""

    #: re-feeds done, detector-input messages fed again, alert records they wrote again to the stream
    done: int = 0
    messages: int = 0
    records: int = 0
    #: seconds the last one took, from noticing to the last record written again
    last_seconds: float = 0.0

    def metrics(self) -> dict[str, float]:
        """As ``/metrics`` counters.

        >>> RefeedFigures(done=1, messages=40, records=6, last_seconds=0.5).metrics()  # doctest: +NORMALIZE_WHITESPACE
        {'detector_refeeds_total': 1, 'detector_refed_messages_total': 40, 'detector_refed_alert_records_total': 6,
         'detector_refeed_seconds': 0.5}
        """
        return {
            "detector_refeeds_total": self.done,
            "detector_refed_messages_total": self.messages,
            "detector_refed_alert_records_total": self.records,
            "detector_refeed_seconds": round(self.last_seconds, 4),
        }


@dataclass
class DetectionState:
    """What the detection agent holds between messages; read and changed under :attr:`DetectionAgent.lock`."""

    #: the detectors (None until the first message or tick restores or makes them)
    runner: DetectionRunner | None = None
    #: the detector-input offset of the last checkpoint written (-1: none)
    offset: int = -1
    #: the detector-input offset of the last message fed to the detectors
    applied: int = -1
    #: messages fed since the checkpoint being taken, acknowledged once the next one is written
    pending: list[EventT] = field(default_factory=list)
    #: the alerts topic's sends since the last checkpoint (awaited before the next)
    sends: list[Awaitable[Any]] = field(default_factory=list)
    #: monotonic time the next checkpoint is due
    next_checkpoint: float = 0.0
    #: the checkpoint being signed and written, outside the lock
    writing: asyncio.Task[None] | None = None
    checkpoints: CheckpointFigures = field(default_factory=CheckpointFigures)
    zones: ZonesRead = field(default_factory=ZonesRead)
    #: calls shed when last warned, and the monotonic time before which no new warning is logged
    shed_warned: tuple[int, float] = (0, 0.0)
    #: the forecast set being built (in a thread) and published
    forecasting: asyncio.Task[None] | None = None
    #: forecast sets that failed to build or publish, since the worker started
    forecast_failures: int = 0
    #: the detector input was taken from this worker (a rebalance) or its checkpoint was fenced: the detectors are
    #: behind whoever holds it now, and are restored from the checkpoint in Redis when they are next needed
    input_lost: bool = False
    #: the detector-input offset of the last message taken from the stream and fed (to these detectors or set-aside ones)
    fed: int = -1
    #: the alerts topic has the records of every message up to this offset (sent by this worker or by the one before)
    sent: int = -1
    #: the detector input's (topic, partition), from the messages taken
    input_tp: tuple[str, int] | None = None
    #: the detectors were just restored from a checkpoint: the first message taken after it is checked for a gap
    restored: bool = False
    #: a checkpoint write found Redis behind this worker: restore and re-feed before the next message or tick
    went_back: RedisWentBack | None = None
    refeeds: RefeedFigures = field(default_factory=lambda: RefeedFigures())
    #: the messages and ticks given to the detectors since the checkpoint before the last, with their wall times
    journal: Journal = field(default_factory=Journal)


class DetectionAgent:
    """Runs the detectors over the detector input and publishes their alerts (see the module's text).

    ``state`` gives the Redis state to read and write through; ``alerts`` is
    the alerts topic; ``key`` gives the checkpoints' signing key (by default
    :func:`streams.runtime.settings.checkpoint_key`, read on first use);
    ``profile`` the jurisdiction (by default the one ``settings`` names);
    ``forecasts`` the forecasts topic (None: the sets go to Redis only);
    ``holds_input`` says whether the worker is assigned the detector input
    now: a second detection worker (a standby in the same consumer group)
    neither ticks its clock nor checkpoints until it is; ``read_input``
    reads detector-input messages back for a re-feed (by default from Kafka,
    :func:`kafka_input_reader`). Call
    :meth:`input_revoked` when the input is taken away, and :meth:`close` at
    shutdown: it writes a last checkpoint.
    """

    def __init__(
        self,
        settings: Settings,
        state: Callable[[], RedisState],
        alerts: faust.TopicT,
        key: Callable[[], bytes] | None = None,
        profile: Profile | None = None,
        forecasts: faust.TopicT | None = None,
        holds_input: Callable[[], bool] | None = None,
        read_input: InputReader | None = None,
    ) -> None:
        self.settings = settings
        #: reads detector-input messages back from Kafka for a re-feed (see :meth:`refeed`)
        self.read_input = read_input if read_input is not None else kafka_input_reader(settings)
        #: whether this worker is assigned the detector input now (None: always, as in tests without Faust's consumer)
        self.holds_input = holds_input
        self.profile = profile if profile is not None else load_jurisdiction(settings)
        self.forecasts = forecasts
        #: the areas, names and hot-spot grid of the forecast sets (the profile's)
        self.places = Places.from_profile(self.profile)
        self.redis = state
        self.alerts = alerts
        self._key_source = key or (lambda: checkpoint_key(settings))
        self._key: bytes | None = None
        self.state = DetectionState()
        #: the agent and the clock timer both drive the detectors: one at a time
        self.lock = asyncio.Lock()
        self.timing = StageTiming() if settings.stage_timing else None

    # -- the agent and its timer ---------------------------------------------------

    async def detect_surges(self, stream: faust.StreamT) -> None:
        """Run the detectors over the accepted calls, in event-time order, and publish their alerts.

        The messages waiting in the stream when one is taken are fed together
        (up to :data:`FEED_MAX`), their alerts written in one go: a message
        costs a Redis round trip, and one per message would leave the agent
        behind when the counting agent's batches are small (a batch goes as
        soon as nothing more is buffered there).
        """
        events = _noack(stream)
        # the stream's queue of messages delivered and not taken yet
        empty = getattr(events.channel, "empty", None)
        waiting: list[tuple[EventT, float]] = []
        # Acknowledged by hand, with each checkpoint: a crash redelivers what the checkpoint lacks.
        async for event in events.events():
            waiting.append((event, time.time()))
            if empty is None or empty() or len(waiting) >= FEED_MAX:
                batch, waiting = waiting, []
                await self.handle_many(batch)

    async def handle(self, event: EventT) -> None:
        """Feed one detector-input message to the detectors, publish its alerts, and checkpoint when due."""
        await self.handle_many([(event, time.time())])

    async def handle_many(self, events: list[tuple[EventT, float]]) -> None:
        """Feed detector-input messages (each with when it was taken from the stream) to the detectors, in order; publish
        their alerts in one write, at the last one's offset; checkpoint when due."""
        st = self.state
        async with self.lock:
            fed = time.time()
            if st.went_back is not None:
                await self.refeed(st.went_back)
            runner = await self.runner()
            await self._refresh_zones(runner)
            timing = self.timing
            if timing is not None and runner.trace is None:
                runner.trace = []
            alerts: list[Alert] = []
            last = None
            yielded = time.monotonic()
            for event, got in events:
                if time.monotonic() - yielded > YIELD_EVERY_S:
                    # a backlog fed at once is seconds of detector work: let the loop run between messages (Kafka's
                    # heartbeats, /metrics), or the group takes the input away (WF_KAFKA_SESSION_TIMEOUT_S)
                    await asyncio.sleep(0)
                    yielded = time.monotonic()
                offset = event.message.offset
                st.input_tp = (event.message.topic, event.message.partition)
                if offset <= st.applied:
                    # fed before (redelivered after a restart or a rebalance): acknowledged at once if
                    # the checkpoint has it, else with the next checkpoint, never ahead of one
                    if offset <= st.offset:
                        event.ack()
                    else:
                        st.pending.append(event)
                    continue
                if st.restored:
                    st.restored = False
                    if st.offset >= 0 and offset > st.applied + 1:
                        # Kafka's committed offsets are past the checkpoint restored: Redis lost a later one
                        await self._refeed_gap(runner, offset)
                out = time.time()
                if timing is not None:
                    timing.arrived(event.value, got, fed)
                alerts += runner.feed(event.value, out)
                st.journal.fed(offset, out)
                if timing is not None:
                    timing.released(runner, out)
                st.pending.append(event)
                st.fed = last = offset
            if last is None:
                return
            try:
                await self._publish(alerts, last)
            except RedisWentBack as exc:
                await self.refeed(exc)  # these messages' records with the others lost
                return
            if timing is not None:
                timing.done(time.time())
                timing.flush(self.redis())
            self._warn_if_shedding(runner)
            self._forecast(runner)
            if self._checkpoint_due():
                await self.checkpoint()

    def input_revoked(self) -> None:
        """The detector input was taken from this worker (Faust's ``on_partitions_revoked``): set the detectors aside.

        Another worker goes on from the last checkpoint; if the input comes
        back here, the detectors are restored from the checkpoint in Redis
        then, not resumed from this worker's older ones (which would miss what
        the other worker fed them). The messages fed since the last checkpoint
        are not acknowledged: the other worker is given them again.
        """
        self.state.input_lost = True

    async def keep_detector_clock(self) -> None:
        """While the feed is silent, the detectors' clock follows the wall clock (outages are news); checkpoint when due.

        Only on the worker that holds the detector input: a standby's clock
        would make the same outage alerts a second time, at other instants.
        """
        if self.holds_input is not None and not self.holds_input():
            self.state.input_lost = self.state.input_lost or self.state.runner is not None
            return
        st = self.state
        async with self.lock:
            if st.went_back is not None:
                await self.refeed(st.went_back)
            runner = await self.runner()
            await self._refresh_zones(runner)
            out = time.time()
            alerts = runner.tick(out)
            tick = st.journal.ticked(st.fed, out)
            if alerts:
                try:
                    await self._publish(alerts, st.applied, clock=True)
                except RedisWentBack as exc:
                    # the re-feed gives the restored detectors this tick too, at the same time: they make these again
                    await self.refeed(exc)
                    return
            tick.sent = True
            if self.timing is not None and runner.trace is not None:
                self.timing.released(runner, out)
                self.timing.done(time.time())
                self.timing.flush(self.redis())
            self._forecast(runner)
            # a silent feed's ticks wait in the journal for the next write: a checkpoint forgets them
            ticks = st.journal.seq - (runner.journal_seq if runner.journal_id == st.journal.id else 0)
            if (alerts or st.pending or ticks >= TICKS_BEFORE_CHECKPOINT) and self._checkpoint_due():
                await self.checkpoint()

    def metrics(self) -> dict[str, float]:
        """The detectors' counters and the checkpoints' figures for ``/metrics`` (empty before the detectors are restored)."""
        if self.state.runner is None:
            return {}
        failures = {"forecast_failures_total": self.state.forecast_failures}
        return {**self.state.runner.metrics(), **self.state.checkpoints.metrics(), **self.state.refeeds.metrics(), **failures}

    async def close(self) -> None:
        """At shutdown: wait for the checkpoint being written, then write one of what was fed since (a clean stop replays nothing)."""
        st = self.state
        if st.forecasting is not None and not st.forecasting.done():
            await st.forecasting  # a set being built: published before the last checkpoint (it takes the lock)
        if not st.pending and st.writing is None:
            return
        async with self.lock:
            try:
                if st.writing is not None:
                    await st.writing
                if st.pending:
                    await self.checkpoint(final=True)
            except Exception as exc:  # noqa: BLE001 -- shutting down: the last checkpoint still holds, whatever failed
                log.warning("no checkpoint at shutdown (the next start replays from the last one): %s", exc)

    # -- the detectors and their checkpoints -------------------------------------------

    async def runner(self, *, keep_journal: bool = False) -> DetectionRunner:
        """The detectors, restored from their checkpoint in Redis when there is one (call under the lock).

        Detectors restored or made afresh go on from here: the journal starts again from them, unless
        ``keep_journal`` (a re-feed, which gives them what the journal holds since their checkpoint).
        """
        st = self.state
        if st.input_lost:
            if st.writing is not None and not st.writing.done():
                await asyncio.wait([st.writing])  # its outcome does not matter: the stored checkpoint decides
            st.writing = None
            log.info("the detectors are set aside: another worker held the detector input; restoring from the checkpoint")
            st.runner, st.pending, st.sends, st.offset, st.applied, st.input_lost = None, [], [], -1, -1, False
            st.zones = ZonesRead()  # the restored detectors hold their checkpoint's zones: hand them the current ones
        if st.runner is None:
            key = self._signing_key()
            redis = self.redis()
            saved = await until_reachable("reading the detectors' checkpoint", redis.load_detection)
            if saved is None:
                st.runner = self._fresh_runner()
                log.info("detectors start empty, on the %s clock of %s", self.profile.timezone, self.profile.name)
            else:
                st.offset, blob = saved
                st.applied = st.offset
                st.runner = _restore(blob, key, st.offset, redis.keys.detector)
                st.restored = True
                log.info("detectors restored from their checkpoint at detector-input offset %d", st.offset)
                _warn_if_other_zone(st.runner, self.profile)
            st.next_checkpoint = time.monotonic() + self.settings.detector_checkpoint_s
            if not keep_journal:
                await self._take_over(st.runner)
        return st.runner

    async def _take_over(self, runner: DetectionRunner) -> None:
        """Go on as the worker that fed ``runner`` before (call from :meth:`runner`, ``runner`` just restored or made).

        That worker's journal entries after the checkpoint are read back from Redis
        (:func:`streams.detection.journal.follow`): the messages it fed since,
        with their wall times, and its clock's ticks between them. They are
        given to the detectors again, the messages read back from Kafka, so
        the records it wrote are made again byte for byte (and skipped by the
        stream) before any message or tick of this worker's; then this
        worker's journal goes on as that one (:meth:`Journal.adopt`). Fresh
        detectors, or a seeded checkpoint's, carry no stamp: they follow the
        journal that started from them (:func:`streams.detection.journal.fresh_chain`),
        that of a worker that died before its first checkpoint, if any.
        """
        st = self.state
        plan = await self._journal_in_redis(runner) or []
        fed = [e.offset for e in plan if not e.tick]
        first, last = (fed[0], fed[-1]) if fed else (st.applied + 1, st.applied)
        log.info(
            "the detectors' journal in Redis holds %d message(s) and %d tick(s) after the %s%s",
            len(fed),
            len(plan) - len(fed),
            "checkpoint" if st.offset >= 0 else "detectors' start",
            f": feeding offsets {first}..{last} at the wall times the worker before fed them at" if plan else "",
        )
        if not plan:
            return
        await self._refresh_zones(runner)  # the zones of now: those the worker before had, unless changed since
        if st.input_tp is None:
            assert DETECTOR_INPUT_PARTITIONS == 1, "the detector input is one partition"
            st.input_tp = (topic_name(self.settings.topic_prefix, DETECTOR_INPUT), 0)
        await self._refeed_range(runner, first, last, time.perf_counter(), plan)
        st.fed = max(st.fed, last)

    async def _journal_in_redis(self, runner: DetectionRunner) -> list[Entry] | None:
        """The entries Redis holds of the journal that stamped ``runner``, after its stamp; this worker's journal goes on as
        that one (:meth:`Journal.adopt`). None when Redis holds no journal for it: this worker's starts from ``runner``."""
        st = self.state
        members = await until_reachable("reading the detectors' journal", self.redis().detection_journal)
        if getattr(runner, "journal_id", None) is None:
            chain = fresh_chain(members)
            if chain is None:
                st.journal.restart(runner)
                return None
            runner.journal_id, runner.journal_seq = chain, 0
        plan = follow(members, runner)
        st.journal.adopt(runner, plan)
        return plan

    def _fresh_runner(self) -> DetectionRunner:
        """Detectors that learnt nothing yet: the whole stage, or the parts ``WF_DETECTION_PARTS`` names (the others held, not run)."""
        parts = self.settings.detection_parts
        if parts != PARTS:
            log.info("this worker runs the detection parts %s of %s", "_".join(parts), ", ".join(PARTS))
            return worker_runner(parts, self.profile, partitions=self.settings.partitions)
        forecasting = ForecastIssuer(profile_forecaster(self.profile))
        return DetectionRunner(suite=profile_suite(self.profile), forecasting=forecasting, partitions=self.settings.partitions)

    async def checkpoint(self, *, final: bool = False) -> None:
        """Save the detectors, then acknowledge the messages they have seen (call under the lock).

        The snapshot is taken here (the runner pickled: the agent's stall);
        signing and writing it go on outside the lock, in a task, unless
        ``final`` (at shutdown), which writes before returning and raises what
        failed. A background write that fails leaves its messages to the next
        checkpoint (a Redis failure is logged; anything else is raised by the
        next message or tick).
        """
        runner = await self.runner()
        st = self.state
        for fut in st.sends:
            await fut  # the alerts topic has every record the checkpoint covers
        st.sends.clear()
        offset, events = st.applied, st.pending
        st.pending = []
        st.next_checkpoint = time.monotonic() + self.settings.detector_checkpoint_s
        started = time.perf_counter()
        seq = st.journal.stamp(runner)
        payload = pickle.dumps(runner, protocol=pickle.HIGHEST_PROTOCOL)
        figures = st.checkpoints
        figures.last_stall_seconds = time.perf_counter() - started
        figures.stall_seconds += figures.last_stall_seconds
        figures.last_bytes = len(payload)
        write = self._write(offset, payload, events, started, fence=st.offset, stamp=(st.journal.id, seq))
        if final:
            await write
        else:
            st.writing = asyncio.ensure_future(self._write_or_requeue(write, offset, events))

    async def _write(
        self, offset: int, payload: bytes, events: list[EventT], started: float, *, fence: int, stamp: tuple[str, int]
    ) -> None:
        """Sign ``payload`` (in a thread: hashing releases the GIL) and write it; then acknowledge ``events``.

        ``fence``: the offset of the checkpoint this worker wrote or restored last (see :meth:`RedisState.commit_detection`);
        ``stamp``: the journal's id and the entry the snapshot was stamped with.
        """
        blob = await asyncio.to_thread(checkpoint.sign, payload, self._signing_key(), offset=offset)
        del payload
        await self.redis().commit_detection(offset, blob, fence=fence, journal=stamp)
        st = self.state
        st.journal.checkpointed(stamp[1])
        st.offset = max(st.offset, offset)
        for event in events:
            event.ack()
        st.checkpoints.written += 1
        st.checkpoints.last_seconds = time.perf_counter() - started

    async def _write_or_requeue(self, write: Awaitable[None], offset: int, events: list[EventT]) -> None:
        try:
            await write
        except CheckpointFenced as exc:
            # another worker holds the input and is further along: never acknowledge, restore from its checkpoint
            self.state.input_lost = True
            log.warning("%s", exc)
        except RedisWentBack as exc:
            # acknowledged by the checkpoint after the re-feed, which the next message or tick starts
            self.state.pending[:0] = events
            self.state.went_back = exc
        except StateError as exc:
            # not acknowledged: the next checkpoint covers these messages too
            self.state.pending[:0] = events
            log.warning("the detectors' checkpoint at offset %d failed (%s); retrying at the next", offset, exc)

    def _checkpoint_due(self) -> bool:
        if self.state.went_back is not None:
            return False  # the re-feed first: a checkpoint now would be refused the same way
        writing = self.state.writing
        if writing is not None:
            if not writing.done():
                return False
            self.state.writing = None
            writing.result()  # raises what stopped the last write (not a Redis failure: those are retried)
        return time.monotonic() >= self.state.next_checkpoint

    def _signing_key(self) -> bytes:
        if self._key is None:
            self._key = self._key_source()
        return self._key

    # -- alerts, zones, warnings ------------------------------------------------------------

    async def _publish(self, alerts: list[Alert], offset: int, *, clock: bool = False, send: list[bool] | None = None) -> int:
        """Alerts, named and summed up, to the Redis stream at once (the gateway's feed), then to the alerts topic (awaited
        before the next checkpoint); how many records were new to the stream.

        The stream first: when Redis went back under the worker (:class:`RedisWentBack`, raised from here) nothing is
        written or sent, and the re-feed makes these records again. The journal's entries not in Redis yet go with them
        (:mod:`streams.detection.journal`): the messages and ticks that made them. ``send`` (one flag per alert; None: all) leaves out
        of the topic the records a re-feed makes again that the topic has.
        """
        tz, where = self.profile.tz, self.profile.name
        alerts = [with_summary(name_alert(a, self.profile.areas), tz=tz, jurisdiction=where) for a in alerts]
        bodies = [json.dumps(a.to_json(), separators=(",", ":")) for a in alerts]
        redis = self.redis()
        fence = self.state.applied
        journal = self.state.journal
        entries = journal.unwritten()  # what the detectors were given up to these records, for a worker taking over
        members = [(e.seq, encode(journal.id, e)) for e in entries]
        added = await until_reachable(
            f"writing {len(bodies)} alert record(s)",
            lambda: redis.append_alerts(offset, bodies, clock=clock, fence=fence, journal=members),
        )
        if entries:
            journal.wrote(entries[-1].seq)
        for i, (a, b) in enumerate(zip(alerts, bodies, strict=True)):
            if send is None or send[i]:
                self.state.sends.append(await self.alerts.send(key=a.id.encode(), value=b.encode()))
                log.info("alert %s %s: %s", a.state.value, a.id, a.reason)
        if not clock:
            self.state.applied = offset
            self.state.sent = max(self.state.sent, offset)
        return added

    # -- Redis went back: restore and feed again --------------------------------------------

    async def refeed(self, went_back: RedisWentBack) -> None:
        """Redis holds less than this worker wrote: restore the stored checkpoint and feed the detectors again (under the lock).

        The detectors are set aside and restored from the checkpoint Redis
        holds, and the detector-input messages after it, up to the last one
        taken from the stream, are read back from Kafka (``read_input``) and
        fed again. When no checkpoint survived (Redis came back empty) the
        detectors start empty and are fed the whole retained input, as on a
        deployment's first start: as long as the detectors' work on it takes. The detectors are deterministic,
        so they make the same records: those that survived are skipped (their
        digests survived with them), the lost ones are appended again, before
        any record of a later message. Records the alerts topic has are not
        sent again. Messages fed since the last checkpoint stay pending, and
        the next checkpoint acknowledges them. When this worker wrote the
        restored checkpoint and its journal (:mod:`streams.detection.journal`)
        holds what came after, the messages are fed at the wall times they were
        first fed at and the clock's ticks come between them as they did, so the
        clock's records (outages, quiet areas closing) are made again too;
        otherwise the journal that stamped the checkpoint is followed as far as
        Redis kept it, and the messages after are fed at today's time, the clock
        going on from now.
        """
        st = self.state
        started = time.perf_counter()
        st.went_back = None
        if self.holds_input is not None and not self.holds_input():
            log.warning("%s; the detector input is another worker's now: the detectors are set aside", went_back)
            st.input_lost = True
            return
        if st.writing is not None and not st.writing.done():
            await asyncio.wait([st.writing])  # its outcome does not matter: the stored checkpoint decides
        st.writing = None
        st.went_back = None  # the write just awaited may have found the same
        pending, sends, target = st.pending, st.sends, st.fed
        st.runner, st.offset, st.applied = None, -1, -1
        st.zones = ZonesRead()  # the restored detectors are handed the zones again
        runner = await self.runner(keep_journal=True)
        await self._refresh_zones(runner)
        st.pending, st.sends, st.restored = pending, sends, False
        plan = st.journal.after(runner)
        if plan is not None:
            st.journal.rewrite_after(runner.journal_seq)  # Redis lost them with the rest: the next write puts them back
        else:
            plan = await self._journal_in_redis(runner)  # another worker's checkpoint: its journal, as far as Redis kept it
        first = next((e.offset for e in plan or () if not e.tick), st.applied + 1)
        log.warning(
            "%s; %s, re-feeding detector-input offsets %d..%d from Kafka (detector_refeeds_total)",
            went_back,
            f"detectors restored from the checkpoint at offset {st.offset}" if st.offset >= 0 else "detectors start empty (no checkpoint)",
            first,
            target,
        )
        await self._refeed_range(runner, first, target, started, plan)

    async def _refeed_gap(self, runner: DetectionRunner, offset: int) -> None:
        """The first message taken after a restore is ``offset``, past the checkpoint's next: feed what lies between first."""
        st = self.state
        first, last = st.applied + 1, offset - 1
        log.warning(
            "the detectors' checkpoint in Redis is at detector-input offset %d, and Kafka's committed offsets are at %d: a later "
            "checkpoint was lost (Redis went back); re-feeding offsets %d..%d from Kafka (detector_refeeds_total)",
            st.offset,
            offset,
            first,
            last,
        )
        st.sent = max(st.sent, last)  # the worker that acknowledged them sent their records first
        await self._refeed_range(runner, first, last, time.perf_counter(), None)  # a start: fed now, as the rest will be

    async def _refeed_range(self, runner: DetectionRunner, first: int, last: int, started: float, plan: list[Entry] | None) -> None:
        """Feed ``runner`` the detector-input messages ``first..last`` read back from Kafka, and publish their records.

        ``plan`` (the journal's entries since ``runner``'s checkpoint, or None) gives each message its first wall time
        and the ticks that came after it; without one the messages are fed now and journaled afresh.
        """
        st = self.state
        figures = st.refeeds
        messages = records = 0
        if plan is None:
            st.journal.restart(runner)
        walls = {e.offset: e.wall for e in plan or () if not e.tick}
        ticks_after: dict[int, list[Entry]] = {}
        before = st.applied
        for e in plan or ():
            if e.tick:
                ticks_after.setdefault(before, []).append(e)
            else:
                before = e.offset
        records += await self._replay_ticks(runner, ticks_after.pop(st.applied, []))
        if st.input_tp is not None and first <= last:
            topic, partition = st.input_tp
            yielded = time.monotonic()
            async for batch in self.read_input(topic, partition, first, last):
                alerts: list[Alert] = []
                send: list[bool] = []
                ticked: list[Entry] = []
                upto = None
                for offset, value in batch:
                    if offset <= st.applied:
                        continue
                    if time.monotonic() - yielded > YIELD_EVERY_S:
                        await asyncio.sleep(0)  # heartbeats and /metrics go on (see handle_many)
                        yielded = time.monotonic()
                    wall = walls.get(offset)
                    if wall is None:
                        wall = time.time()
                        st.journal.fed(offset, wall)
                    made = runner.feed(value, wall)
                    alerts += made
                    send += [offset > st.sent] * len(made)
                    for tick in ticks_after.pop(offset, []):
                        made = runner.tick(tick.wall)
                        alerts += made
                        send += [not tick.sent] * len(made)
                        ticked.append(tick)
                    upto = offset
                    messages += 1
                if upto is not None:
                    records += await self._publish(alerts, upto, send=send)
                    for tick in ticked:
                        tick.sent = True
        records += await self._replay_ticks(runner, [e for _, ticks in sorted(ticks_after.items()) for e in ticks])
        if st.applied < last:
            await self._publish([], last)  # Kafka holds nothing more up to it: the applied offset says so
        figures.done += 1
        figures.messages += messages
        figures.records += records
        figures.last_seconds = time.perf_counter() - started
        log.warning(
            "re-fed %d detector-input message(s) up to offset %d in %.2f s: %d alert record(s) written again to the stream",
            messages,
            last,
            figures.last_seconds,
            records,
        )
        self._forecast(runner)

    async def _replay_ticks(self, runner: DetectionRunner, ticks: list[Entry]) -> int:
        """Give ``runner`` the clock's ``ticks`` again at their times, outside any message; publish what they make."""
        alerts: list[Alert] = []
        send: list[bool] = []
        for tick in ticks:
            made = runner.tick(tick.wall)
            alerts += made
            send += [not tick.sent] * len(made)
        added = await self._publish(alerts, self.state.applied, clock=True, send=send) if alerts else 0
        for tick in ticks:
            tick.sent = True
        return added

    async def _refresh_zones(self, runner: DetectionRunner) -> None:
        """At most every ZONES_POLL_S: if the gateway changed the event zones, hand them to the detectors.

        Malformed zones are skipped with a warning; a Redis failure keeps the
        zones watched so far and is retried at the next poll.
        """
        seen = self.state.zones
        now = time.monotonic()
        if now < seen.next_poll:
            return
        seen.next_poll = now + ZONES_POLL_S
        redis = self.redis()
        try:
            if seen.read and await redis.zones_version() == seen.version:
                return
            version, entries = await redis.event_zones()
        except StateError as exc:
            log.warning("event zones not refreshed, retrying in %.0f s: %s", ZONES_POLL_S, exc)
            return
        zones, problems = parse_zones(entries)
        for problem in problems:
            log.warning("event zone skipped: %s", problem)
        runner.set_zones(zones)
        runner.set_event_loads(parse_event_loads(entries))
        seen.read, seen.version = True, version
        log.info("watching %d event zone(s) (zones version %s): %s", len(zones), version, ", ".join(z.id for z in zones) or "-")

    # -- forecasts --------------------------------------------------------------------------

    def _forecast(self, runner: DetectionRunner) -> None:
        """Start building the forecast set due, unless one is being built (then it waits, or a newer one replaces it)."""
        st = self.state
        if st.forecasting is not None:
            if not st.forecasting.done():
                return
            st.forecasting.result()  # raises only what is not a build's or a write's failure (those are logged)
            st.forecasting = None
        issue = runner.forecasts_due()
        if issue is not None:
            st.forecasting = asyncio.ensure_future(self._build_and_publish(issue))

    async def _build_and_publish(self, issue: Issue) -> None:
        """Build the set in a thread, then (under the lock) write it to Redis, send it, and hand its windows to the monitor."""
        started = time.perf_counter()
        try:
            forecast_set = await asyncio.to_thread(make_set, issue, self.places, time.time())
        except Exception:
            self.state.forecast_failures += 1
            log.exception("the forecast set issued at %.0f failed to build; the next is due in 15 minutes of event time", issue.issued)
            return
        seconds = time.perf_counter() - started
        body = json.dumps(forecast_set, separators=(",", ":"))
        async with self.lock:
            try:
                version = await self.redis().write_forecast(body)
            except StateError as exc:
                self.state.forecast_failures += 1
                log.warning("the forecast set issued at %.0f was not written (%s); the next is due in 15 minutes", issue.issued, exc)
                return
            if self.forecasts is not None:
                try:
                    await self.forecasts.send(key=b"forecast", value=body.encode())
                except Exception:
                    self.state.forecast_failures += 1
                    log.exception("the forecast set issued at %.0f is in Redis but was not sent on the forecasts topic", issue.issued)
            runner = self.state.runner
            if runner is not None:
                runner.forecasting.published(forecast_set, seconds)
        log.info("forecast set %d issued at %.0f: %d areas, built in %.2f s", version, issue.issued, len(forecast_set["areas"]), seconds)

    def _warn_if_shedding(self, runner: DetectionRunner) -> None:
        """At most once a minute while it goes on: the detectors' windows are full and drop their oldest calls early."""
        shed = sum(runner.shed().values())
        now = time.monotonic()
        if shed > self.state.shed_warned[0] and now >= self.state.shed_warned[1]:
            log.warning(
                "the detectors' windows hold their cap of calls (max_window_calls): %d of the oldest calls dropped early so far; "
                "long-window counts are low until the rate falls (detector_calls_shed_total)",
                shed,
            )
            self.state.shed_warned = (shed, now + SHED_WARN_S)


def _noack(stream: faust.StreamT) -> faust.StreamT:
    """``stream.noack()``: Faust's Stream has it; its StreamT type (faust-streaming 0.15) does not declare it."""
    return cast(faust.Stream, stream).noack()


def _warn_if_other_zone(runner: DetectionRunner, profile: Profile) -> None:
    """Warn when a restored checkpoint's detectors learnt their rhythm on another clock than the profile's."""
    learnt = runner.suite.surge.baseline.timezone
    if learnt != profile.timezone:
        log.warning(
            "the detectors' checkpoint learnt its hour-of-week rhythm in %s, but the profile (%s) says %s: expected counts are "
            "off by the zones' difference until they relearn; to start in the profile's zone, delete the checkpoint and "
            "bootstrap again (python -m streams.detection.bootstrap --help)",
            learnt,
            profile.path or profile.id,
            profile.timezone,
        )


def _restore(blob: bytes, key: bytes, offset: int, where: str) -> DetectionRunner:
    """The runner of a checkpoint read from Redis key ``where``, unpickled only if its signature verifies under ``key``."""
    try:
        runner = checkpoint.restore(blob, key, offset=offset)
    except checkpoint.CheckpointRefused as exc:
        raise StateError(
            f"the detectors' checkpoint in {where} was refused: {exc}; it was not unpickled. Set WF_CHECKPOINT_KEY to the "
            f"key it was written with, or delete it (redis-cli DEL {where}) and restart the worker to start the detectors afresh"
        ) from None
    except Exception as exc:  # signed with our key, yet not loadable by this code (another version's checkpoint)
        raise unreadable_checkpoint(where, exc) from exc
    if not isinstance(runner, DetectionRunner):
        raise unreadable_checkpoint(where, TypeError(f"it holds a {type(runner).__name__}, not a DetectionRunner"))
    return runner


def kafka_input_reader(settings: Settings) -> InputReader:
    """An :data:`InputReader` on Kafka (``WF_KAFKA_BOOTSTRAP``): one consumer outside the group, assigned the partition."""

    async def read(topic: str, partition: int, first: int, last: int) -> AsyncIterator[list[tuple[int, bytes]]]:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError

        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, request_timeout_ms=15000)
        tp = TopicPartition(topic, partition)
        try:
            await consumer.start()
            consumer.assign([tp])
            begin = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
            if begin > first:
                log.warning("detector-input offsets %d..%d are gone from Kafka (retention): re-feeding from %d", first, begin - 1, begin)
                first = begin
            last = min(last, end - 1)
            if first > last:
                return
            consumer.seek(tp, first)
            deadline = time.monotonic() + REFEED_STALL_S
            while await consumer.position(tp) <= last:
                got = await consumer.getmany(tp, timeout_ms=500, max_records=FEED_MAX)
                batch = [(r.offset, r.value) for r in got.get(tp, ()) if r.offset <= last]
                if batch:
                    deadline = time.monotonic() + REFEED_STALL_S
                    yield batch
                elif time.monotonic() > deadline:
                    raise StateError(
                        f"Kafka at {settings.kafka_bootstrap} handed over nothing of {topic}[{partition}] past offset "
                        f"{await consumer.position(tp)} for {REFEED_STALL_S:.0f} s while re-feeding the detectors up to {last}"
                    )
        except KafkaError as exc:
            raise StateError(
                f"Kafka at {settings.kafka_bootstrap} failed while re-feeding the detectors from {topic}[{partition}]: {exc!r}"
            ) from exc
        finally:
            await consumer.stop()

    return read
