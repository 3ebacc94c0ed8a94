"""The Faust application: factory, topics, the counting agent and the detection agent.

``create_app(settings)`` builds an app with its agent wired to Redis; the
module ``streams.runtime.worker`` holds the module-level ``app`` the Faust CLI runs.
The detection agent also follows the event zones the gateway keeps in Redis:
it reads ``P:zones:version`` at most every :data:`ZONES_POLL_S` seconds and,
when it changed, hands the event zones of ``P:zones`` to the detectors.

The detection agent writes each message's alerts to the Redis stream as soon as
the detectors return them (de-duplicated there, see
:meth:`streams.counting.state.RedisState.append_alerts`) and checkpoints the detectors
every ``WF_DETECTOR_CHECKPOINT_S`` seconds, not per message: the pickled state
grows with the calls in the windows (megabytes in a storm). It acknowledges its
input to Kafka only up to the checkpoint, so after a crash the messages since
the checkpoint are delivered again and fed to the restored detectors, which make
the same alert records; the stream keeps one copy of each. The alerts topic is
at-least-once: a record may be sent again after a crash, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import pickle
import tempfile
import threading
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import faust
from aiokafka.errors import KafkaError
from faust.types import TP, EventT
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from detectors.types import Alert
from streams.counting.batching import Batcher
from streams.counting.planner import CALL, UPDATE, Incoming, Plan, Snapshot, encode_deadletter
from streams.counting.planproc import OffloadedState, PlanProcessDied, die_with_parent
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
from streams.counting.state import BatchResult, RedisState, StateError, TakeNext, commit_detection_sync, unreadable_checkpoint
from streams.detection.runner import DetectionRunner, encode_points, parse_zones
from streams.faustext import fastpath as faust_fastpath
from streams.faustext import fetch_wait, kafka_backoff
from streams.runtime.metrics import render_prometheus
from streams.runtime.settings import Settings, load_settings
from streams.topics import ALERTS, CALLS, DEADLETTER, DETECTOR_INPUT, INCIDENT_UPDATES, topic_name

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds between two reads of the event zones' version counter.
ZONES_POLL_S = 5.0

#: Seconds between two checks that Redis still holds the offsets of partitions with no new records.
LOSS_CHECK_S = 10.0

#: Longest wait between two tries of a batch while Redis cannot be reached.
RETRY_MAX_S = 5.0

#: Seconds a crashed worker may spend stopping before it exits anyway (code 70).
CRASH_EXIT_S = 30.0


class _App(faust.App):
    """Faust's app, except that a crash ends the process within :data:`CRASH_EXIT_S`.

    Faust stops a crashed app gracefully, and that can hang for minutes (its
    consumer's final commit waits on a thread that is gone), leaving a worker
    that looks alive and does nothing. Exiting lets the process supervisor
    restart it; Kafka redelivers what it had not committed.
    """

    _crash_timer: threading.Timer | None = None

    async def crash(self, reason: BaseException) -> None:
        if self._crash_timer is None:
            self._crash_timer = threading.Timer(CRASH_EXIT_S, _exit_after_crash, (reason,))
            self._crash_timer.daemon = True
            self._crash_timer.start()
        await super().crash(reason)


#: How much the forked checkpoint yields the CPU to the live pipeline (``nice`` increment):
#: in a storm it pickles for 0.4-1.0 s of CPU every ``WF_DETECTOR_CHECKPOINT_S``.
CHECKPOINT_NICE = 10


def checkpoint_in_child(settings: Settings, offset: int, runner: DetectionRunner) -> NoReturn:
    """In the detection worker's forked child: pickle ``runner`` (a copy-on-write snapshot), write it as the
    checkpoint at ``offset``, and exit 0 (1 on any error, printed), without touching the parent's sockets."""
    # No garbage collection here: the child exits in a second, and a collection walks the
    # whole heap, copying every page the parent shares (0.2-0.4 s of CPU per checkpoint in a storm).
    gc.disable()
    code = 1
    try:
        die_with_parent()
        os.nice(CHECKPOINT_NICE)
        commit_detection_sync(settings, offset, pickle.dumps(runner))
        code = 0
    except BaseException:  # noqa: BLE001 -- reported by the exit code; the parent logs it
        traceback.print_exc()
    finally:
        os._exit(code)


def _exit_after_crash(reason: BaseException) -> None:
    log.critical("worker crashed (%r) and did not stop within %g s; exiting with code 70", reason, CRASH_EXIT_S)
    logging.shutdown()
    os._exit(70)


def create_app(settings: Settings | None = None) -> faust.App:
    """A Faust app whose ``count_calls_and_updates`` agent keeps the Redis counts."""
    s = settings or load_settings()
    kafka_backoff.install()
    fetch_wait.install()
    if s.faust_fastpath:
        faust_fastpath.install()
    faust_dirs = Path(tempfile.gettempdir()) / "watchfloor-faust"
    faust_dirs.mkdir(parents=True, exist_ok=True)
    # One consumer group per set of roles: Faust assumes every member of a group
    # runs the same agents, so a count-only and a detect-only worker must not share one.
    app_id = s.app_id if set(s.roles) == {"count", "detect"} else f"{s.app_id}-{'-'.join(s.roles)}"
    app = _App(
        app_id,
        broker=f"kafka://{s.kafka_bootstrap}",
        store="memory://",
        topic_partitions=s.partitions,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # Do not wait at shutdown or rebalance for every message to be acknowledged: the
        # detection agent acknowledges with its checkpoints (a clean stop writes one
        # after the consumer stops), and the counting agent's commit is exact by offset.
        stream_wait_empty=False,
        web_port=s.web_port,
        web_host="127.0.0.1",
        # Faust keeps a small folder per app id; keep it out of the working tree.
        datadir=str(faust_dirs / app_id),
        # bounded so that a fetch fits the room left in the agent's buffer (Settings.max_poll_records)
        broker_max_poll_records=s.max_poll_records,
        **({"Monitor": faust_fastpath.LeanMonitor} if s.faust_fastpath else {}),
    )
    calls_topic = topic_name(s.topic_prefix, CALLS)
    updates_topic = topic_name(s.topic_prefix, INCIDENT_UPDATES)
    kinds = {calls_topic: CALL, updates_topic: UPDATE}
    # every topic's keys and values are bytes (the fast path's schema makes the events straight from the records)
    raw = {"schema": faust_fastpath.RawSchema()} if s.faust_fastpath else {"key_serializer": "raw", "value_serializer": "raw"}
    ingest = app.topic(calls_topic, updates_topic, **raw)
    deadletter = app.topic(topic_name(s.topic_prefix, DEADLETTER), **raw)
    detector_input_name = topic_name(s.topic_prefix, DETECTOR_INPUT)
    detector_input = app.topic(detector_input_name, **raw)
    alerts_topic = app.topic(topic_name(s.topic_prefix, ALERTS), **raw)
    holder: dict[str, RedisState] = {}

    async def committer_state(i: int) -> RedisState:
        """The state committer ``i`` commits through, each with a plan process of its own; the first is also everyone else's."""
        name = "state" if i == 0 else f"state{i}"
        if name not in holder:
            kind = OffloadedState if "count" in s.roles and s.plan_process else RedisState
            holder[name] = kind.from_settings(s)
        return holder[name]

    async def state() -> RedisState:
        return await committer_state(0)

    async def publish_before_commit(plan: Plan) -> None:
        # Awaited to the broker's acknowledgement before the batch commits, so a
        # refused record or a detector input is never lost; a crash in between
        # may publish it twice (both carry partition/offset to drop the copy).
        now = time.time()
        futures = []
        for dl in plan.dead_letters:
            topic = calls_topic if dl.source.kind == CALL else updates_topic
            futures.append(await deadletter.send(key=str(dl.source.offset).encode(), value=encode_deadletter(dl, topic, at=now)))
            log.warning("dead letter %s[%d]@%d: %s: %s", topic, dl.source.partition, dl.source.offset, dl.reason.value, dl.detail)
        for fut in futures:
            await fut
        if plan.points:
            # Straight to the Kafka client, awaiting the broker's acknowledgement:
            # Faust's buffered send costs a buffer flush cycle per batch here.
            await app.producer.send_and_wait(detector_input_name, None, encode_points(plan.points), None, None, None)

    # One past the last offset this process counted, per (kind, partition): what Redis must
    # still hold. Each committer holds its lock while it commits; a rebuild and the loss
    # check of quiet partitions hold every committer's (all_committers()).
    counted: dict[tuple[str, int], int] = {}
    committer_locks = [asyncio.Lock() for _ in range(s.committers)]
    # which committer counts each partition, dealt in the order partitions are first seen, never changed:
    # a partition's records (calls and updates alike: they share the call state) go through one committer, in order
    committer_of: dict[int, int] = {}

    @contextlib.asynccontextmanager
    async def all_committers() -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for lock in committer_locks:  # always in this order
                await stack.enter_async_context(lock)
            yield

    async def count_calls_and_updates(stream: faust.StreamT) -> None:
        """Fold calls and incident updates into per-cell, per-minute counts in Redis, batch by batch.

        Each batch must follow what Redis says was applied; when it does not,
        Redis lost its data, and the records in between are counted again from
        Kafka's retained log before the batch (see :mod:`streams.counting.rebuild`).
        Records go on being read while the previous batch commits (a
        :class:`~streams.counting.batching.Batcher` between the stream and the committer),
        and each is acknowledged to Kafka once its batch is committed.
        """
        # Each committer's batcher has room for two batches beyond the one committing and the
        # next (planned during that commit): records come in runs of one partition per fetch, and
        # the agent waiting for room in one batcher would leave the other committers without records.
        room = (4 if s.committers > 1 else 2) * s.batch_size
        batchers: list[Batcher[EventT]] = [Batcher(s.batch_size, s.batch_within_s, max_pending=room) for _ in range(s.committers)]
        committers = [asyncio.ensure_future(_commit_batches(i, await committer_state(i), stream, batchers[i])) for i in range(s.committers)]
        n = s.committers
        try:
            async for event in stream.noack().events():
                p = event.message.partition
                i = committer_of.get(p)
                if i is None:
                    i = committer_of[p] = len(committer_of) % n
                if committers[i].done():
                    committers[i].result()  # raises what stopped it
                if batchers[i].add(event):
                    await batchers[i].room()
        finally:
            for committer in committers:
                committer.cancel()

    async def _commit_batches(i: int, st: RedisState, stream: faust.StreamT, batcher: Batcher[EventT]) -> None:
        """Committer ``i``: commit the batcher's batches in order, acknowledging each batch's records after its commit."""
        # the batch after the one committing, taken from the batcher (when a full one waits)
        # just before that commit, so that the plan process plans it during the commit
        following: list[tuple[list[EventT], list[Incoming]]] = []

        def take_next() -> tuple[list[Incoming], frozenset[tuple[str, int]]] | None:
            events = None if following else batcher.take_full()
            if events is None:
                return None
            batch = [_incoming(e, kinds) for e in events]
            following.append((events, batch))
            return batch, _catching_up(batch)

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
                    batch = [_incoming(e, kinds) for e in events]
                result = await _count_batch(i, st, batch, take_next)
                if result.plan.skipped:
                    log.info("skipped %d records already counted before a restart", result.plan.skipped)
                if acking is not None:
                    await acking
                acking = asyncio.ensure_future(ack(events))
        except Exception as exc:
            # Nothing after this batch may commit before it: stop the worker (it exits, see _App).
            log.exception("counting stopped: %r", exc)
            await app.crash(exc)
            raise

    async def _count_batch(i: int, st: RedisState, batch: list[Incoming], take_next: TakeNext | None = None) -> BatchResult:
        """Committer ``i`` commits one batch, after counting what Redis is missing before it.

        While Redis (or Kafka, for a rebuild) cannot be reached, the batch is
        kept and tried again (:func:`_until_reachable`).
        """

        async def attempt() -> BatchResult:
            async with committer_locks[i]:
                behind = _catching_up(batch)
                try:
                    return await st.apply(
                        batch, publish_before_commit, check_snapshot=_follows_applied(batch), catching_up=behind, take_next=take_next
                    )
                except RedisDataLost:
                    pass
            # the rebuild counts what is missing on every partition: no committer commits meanwhile
            async with all_committers():
                behind = _catching_up(batch)
                await _count_missing(st, first_offsets(batch))
                # unchecked: a rebuild runs once per gap
                return await st.apply(batch, publish_before_commit, catching_up=behind)

        result = await _until_reachable(f"committing a batch of {len(batch)} records", attempt)
        for tp, after in offsets_after(batch).items():
            counted[tp] = max(counted.get(tp, 0), after)
        return result

    def _catching_up(batch: list[Incoming]) -> frozenset[tuple[str, int]]:
        """The streams of the batch's partitions with records still to read in Kafka after it.

        Nothing of their partition times out or expires ahead of them (see
        :func:`streams.counting.state.expiry_times`). A stream whose end Faust does not
        know yet (not fetched yet, or not assigned any more) counts as one.
        """
        after = offsets_after(batch)
        behind = set()
        for p in {p for _, p in after}:
            for topic, kind in kinds.items():
                try:
                    end = app.consumer.highwater(TP(topic, p))
                except AssertionError:  # aiokafka: "Partition is not assigned" (a rebalance)
                    end = None
                if end is None or end > max(counted.get((kind, p), 0), after.get((kind, p), 0)):
                    behind.add((kind, p))
        return frozenset(behind)

    def _follows_applied(batch: list[Incoming]):  # noqa: ANN202 -- the check_snapshot callback of RedisState.apply
        firsts = first_offsets(batch)

        async def check(snap: Snapshot) -> None:
            gaps = await _missing(firsts, snap.offsets)
            if gaps:
                raise RedisDataLost(gaps)

        return check

    async def _missing(next_offsets: dict[tuple[str, int], int], applied: dict[tuple[str, int], int]) -> dict:
        """The records missing in Redis before ``next_offsets``, as :func:`streams.counting.rebuild.find_gaps` spans.

        Kafka is asked where each log begins only when Redis holds no offset
        for a partition (a first start or a loss); otherwise a log starting at 0
        is assumed, the most that can be missing.
        """
        gaps = find_gaps(next_offsets, applied, {})
        if gaps and any(tp not in applied for tp in gaps):
            async with KafkaLog(s) as kl:
                gaps = find_gaps(next_offsets, applied, await kl.begin_offsets(gaps))
        return gaps

    async def _count_missing(st: RedisState, firsts: dict[tuple[str, int], int]) -> None:
        """Count, from Kafka, the records missing in Redis before ``firsts`` and before what this process counted. Under the lock.

        Two causes: Redis lost what was counted (its data, or part of it), or a
        batch failed (Redis unreachable) and Faust, restarting the agent, went
        on without it. Only the second kind was never published.
        """
        next_offsets = {**counted, **firsts}
        async with KafkaLog(s) as kl:
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
                    s.redis_prefix, describe(lost),
                )  # fmt: skip
            if skipped:
                log.error(
                    "records %s were given to a batch that failed and were not given again; counting them from Kafka's log, "
                    "with their detector input and dead letters",
                    describe(skipped),
                )
            summary = await apply_spans(st, kl, spans, publish=publish_before_commit, publish_from=done)
        (log.error if summary.lost else log.warning)("missing records counted: %s", summary.text())

    async def check_quiet_partitions() -> None:
        """Notice a loss on partitions with no new records (a batch notices it on the others)."""
        if not counted:
            return
        async with all_committers():
            st = await state()
            try:
                applied = await st.applied_offsets()
            except RedisError as exc:
                log.warning("could not check the applied offsets (retrying in %.0f s): %s", LOSS_CHECK_S, exc)
                return
            try:
                if await _missing(counted, applied):
                    await _count_missing(st, {})
            except (RebuildError, StateError, RedisError, KafkaError) as exc:
                # the next batch or check starts again from what Redis then holds
                log.error("the rebuild after a Redis loss did not finish (retrying in %.0f s): %s", LOSS_CHECK_S, exc)

    if "count" in s.roles:
        app.agent(ingest, name="count_calls_and_updates")(count_calls_and_updates)
        app.timer(interval=LOSS_CHECK_S)(check_quiet_partitions)

    # The agent and the clock timer both drive the detectors: one at a time.
    # offset: the checkpoint's; applied: the last message fed; pending: messages fed
    # since the checkpoint (acknowledged with the next one); sends: alerts-topic futures.
    detection: dict = {
        "runner": None, "offset": -1, "applied": -1, "pending": [], "sends": [], "next_checkpoint": 0.0, "child": None,
        "lock": asyncio.Lock(), "zones_read": False, "zones_version": None, "zones_poll": 0.0, "shed_warned": (0, 0.0),
    }  # fmt: skip

    async def detection_runner() -> DetectionRunner:
        """The detectors, restored from their checkpoint in Redis when there is one."""
        if detection["runner"] is None:
            st = await state()
            saved = await _until_reachable("reading the detectors' checkpoint", st.load_detection)
            if saved is None:
                detection["runner"] = DetectionRunner(partitions=s.partitions)
            else:
                detection["offset"], blob = saved
                detection["applied"] = detection["offset"]
                try:
                    detection["runner"] = pickle.loads(blob)  # our own checkpoint, in our own Redis
                except Exception as exc:  # noqa: BLE001 -- any unpickling failure: a checkpoint of other code or bytes
                    raise unreadable_checkpoint(st.keys.detector, exc) from exc
                log.info("detectors restored from their checkpoint at detector-input offset %d", detection["offset"])
            detection["next_checkpoint"] = time.monotonic() + s.detector_checkpoint_s
        return detection["runner"]

    async def publish_alerts(alerts: list[Alert], offset: int, *, clock: bool = False) -> None:
        """Alerts to the Redis stream at once (the gateway's feed), and to the alerts topic before the next checkpoint."""
        bodies = [json.dumps(a.to_json(), separators=(",", ":")) for a in alerts]
        for a, b in zip(alerts, bodies, strict=True):
            detection["sends"].append(await alerts_topic.send(key=a.id.encode(), value=b.encode()))
            log.info("alert %s %s: %s", a.state.value, a.id, a.reason)
        st = await state()
        await _until_reachable(f"writing {len(bodies)} alert record(s)", lambda: st.append_alerts(offset, bodies, clock=clock))
        detection["applied"] = offset

    async def checkpoint(*, in_process: bool = False) -> None:
        """Save the detectors, then acknowledge the messages they have seen (call under the lock).

        The state is pickled by a forked child, a copy-on-write snapshot, so a
        storm's megabytes of windows never stall the agent (about 70 ms a MB);
        ``in_process`` pickles here instead (at shutdown). The messages are
        acknowledged once the child has written the checkpoint.
        """
        runner = await detection_runner()
        for fut in detection["sends"]:
            await fut  # the alerts topic has every record the checkpoint covers
        detection["sends"].clear()
        offset, events = detection["applied"], detection["pending"]
        detection["pending"] = []
        detection["next_checkpoint"] = time.monotonic() + s.detector_checkpoint_s
        started = time.perf_counter()
        if in_process:
            await (await state()).commit_detection(offset, pickle.dumps(runner))
            _checkpointed(offset, events, started)
            return
        pid = os.fork()
        if pid == 0:  # the child: pickle the snapshot, write it, and leave without touching the parent's sockets
            checkpoint_in_child(s, offset, runner)
        detection["child"] = asyncio.ensure_future(_await_child(pid, offset, events, started))

    async def _await_child(pid: int, offset: int, events: list, started: float) -> None:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            await asyncio.sleep(0.02)
        if os.waitstatus_to_exitcode(status) == 0:
            _checkpointed(offset, events, started)
        else:
            # not acknowledged: the next checkpoint covers these messages too
            detection["pending"][:0] = events
            log.warning("the detectors' checkpoint at offset %d failed (exit status %d); retrying at the next", offset, status)

    def _checkpointed(offset: int, events: list, started: float) -> None:
        detection["offset"] = max(detection["offset"], offset)
        for event in events:
            event.ack()
        counters = detection["runner"].counters
        counters["detector_checkpoints_total"] += 1
        counters["detector_checkpoint_seconds"] = round(time.perf_counter() - started, 4)

    def checkpoint_due() -> bool:
        child = detection["child"]
        return (child is None or child.done()) and time.monotonic() >= detection["next_checkpoint"]

    async def refresh_zones(runner: DetectionRunner) -> None:
        """At most every ZONES_POLL_S: if the gateway changed the event zones, hand them to the detectors.

        Malformed zones are skipped with a warning; a Redis failure keeps the
        zones watched so far and is retried at the next poll.
        """
        now = time.monotonic()
        if now < detection["zones_poll"]:
            return
        detection["zones_poll"] = now + ZONES_POLL_S
        st = await state()
        try:
            if detection["zones_read"] and await st.zones_version() == detection["zones_version"]:
                return
            version, entries = await st.event_zones()
        except StateError as exc:
            log.warning("event zones not refreshed, retrying in %.0f s: %s", ZONES_POLL_S, exc)
            return
        zones, problems = parse_zones(entries)
        for problem in problems:
            log.warning("event zone skipped: %s", problem)
        runner.set_zones(zones)
        detection["zones_read"], detection["zones_version"] = True, version
        log.info("watching %d event zone(s) (zones version %s): %s", len(zones), version, ", ".join(z.id for z in zones) or "-")

    async def detect_surges(stream: faust.StreamT) -> None:
        """Run the detectors over the accepted calls, in event-time order, and publish their alerts."""
        # Acknowledged by hand, with each checkpoint: a crash redelivers what the checkpoint lacks.
        async for event in stream.noack().events():
            async with detection["lock"]:
                runner = await detection_runner()
                await refresh_zones(runner)
                if event.message.offset <= detection["applied"]:
                    # fed before (redelivered after a restart or a rebalance): acknowledged at once if
                    # the checkpoint has it, else with the next checkpoint, never ahead of one
                    if event.message.offset <= detection["offset"]:
                        event.ack()
                    else:
                        detection["pending"].append(event)
                    continue
                await publish_alerts(runner.feed(event.value, time.time()), event.message.offset)
                detection["pending"].append(event)
                _warn_if_shedding(runner)
                if checkpoint_due():
                    await checkpoint()

    def _warn_if_shedding(runner: DetectionRunner) -> None:
        """At most once a minute while it goes on: the detectors' windows are full and drop their oldest calls early."""
        shed = sum(runner.shed().values())
        now = time.monotonic()
        if shed > detection["shed_warned"][0] and now >= detection["shed_warned"][1]:
            log.warning(
                "the detectors' windows hold their cap of calls (max_window_calls): %d of the oldest calls dropped early so far; "
                "long-window counts are low until the rate falls (detector_calls_shed_total)",
                shed,
            )
            detection["shed_warned"] = (shed, now + 60.0)

    async def keep_detector_clock() -> None:
        """While the feed is silent, the detectors' clock follows the wall clock (outages are news); checkpoint when due."""
        async with detection["lock"]:
            runner = await detection_runner()
            await refresh_zones(runner)
            alerts = runner.tick(time.time())
            if alerts:
                await publish_alerts(alerts, detection["applied"], clock=True)
            # alerts of the clock alone are not made again by a replay: checkpoint them soon
            if (alerts or detection["pending"]) and checkpoint_due():
                await checkpoint()

    if "detect" in s.roles:
        app.agent(detector_input, name="detect_surges")(detect_surges)
        app.timer(interval=min(5.0, s.detector_checkpoint_s))(keep_detector_clock)

    @app.page("/metrics")
    async def metrics(web, request):  # noqa: ANN001 -- Faust's view signature
        counters = detection["runner"].metrics() if detection["runner"] is not None else {}
        delivered, blocked = faust_fastpath.deliveries(app.consumer)
        fetch = {"fetch_records_delivered_total": delivered, "fetch_deliveries_blocked_total": blocked} if s.faust_fastpath else {}
        body = render_prometheus({**await (await state()).metrics(), **counters, **fetch})
        return web.text(body, content_type="text/plain; version=0.0.4")

    @app.on_before_shutdown.connect
    async def close_redis(app_, **kwargs) -> None:  # noqa: ANN001
        if s.faust_fastpath:
            delivered, blocked = faust_fastpath.deliveries(app.consumer)
            log.info("fetch loop: %d records delivered, %d of them into a full buffer (blocked)", delivered, blocked)
        if detection["pending"]:
            async with detection["lock"]:
                try:
                    if detection["child"] is not None:
                        await detection["child"]
                    await checkpoint(in_process=True)  # a clean stop replays nothing
                except Exception as exc:  # noqa: BLE001 -- shutting down: the last checkpoint still holds
                    log.warning("no checkpoint at shutdown (the next start replays from the last one): %s", exc)
        for name in list(holder):
            await holder.pop(name).close()

    return app


async def _until_reachable(what: str, attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()``, again and again while it fails because Redis (or Kafka, in a rebuild) cannot be reached.

    Backs off from 0.5 s to :data:`RETRY_MAX_S`. An agent that raised instead
    would be restarted by Faust without what it had in hand (a batch, alerts).
    """
    delay = 0.5
    while True:
        try:
            return await attempt()
        except (StateError, RebuildError, RedisError, PlanProcessDied) as exc:
            if not _unreachable(exc):
                raise
            log.warning("%s failed, trying again in %.1f s: %s", what, delay, exc)
        await asyncio.sleep(delay)
        delay = min(2 * delay, RETRY_MAX_S)


def _unreachable(exc: BaseException | None) -> bool:
    """Redis could not be reached (or Kafka, during a rebuild; or the plan process died): worth trying again, unlike a refused script."""
    while exc is not None:
        if isinstance(exc, RedisConnectionError | RedisTimeoutError | RebuildError | PlanProcessDied):
            return True
        exc = exc.__cause__
    return False


def _incoming(event: EventT, kinds: dict[str, str]) -> Incoming:
    msg = event.message
    return Incoming(kinds[msg.topic], msg.partition, msg.offset, msg.value)
